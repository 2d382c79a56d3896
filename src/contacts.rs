//! The contacts file: a CSV exported from a CRM or Excel, streamed row by row.
//!
//! What real exports contain, and what this reader does about it: a UTF-8 BOM
//! (skipped), `;` or tab delimiters from European and Latin American Excel
//! (detected from the header line), Windows-1252 text (decoded when the campaign says
//! so), CRLF line ends, quoted fields with embedded newlines, blank lines and ragged
//! rows. Memory stays bounded: a record may not exceed [`MAX_RECORD_BYTES`] and the
//! header may not exceed [`MAX_COLUMNS`], so a stray quote cannot swallow the file.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use std::sync::{Arc, Mutex};

use thiserror::Error;

// What the campaign file says about its contacts file is the reader's vocabulary: it
// lives here, and the campaign imports it.
/// The text encoding of the contacts file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
pub enum Encoding {
    #[default]
    #[serde(rename = "utf-8", alias = "utf8", alias = "UTF-8")]
    Utf8,
    /// What Excel writes for "CSV" in most Western locales.
    #[serde(rename = "windows-1252", alias = "cp1252", alias = "latin1")]
    Windows1252,
}

/// The contacts file and how to read it.
#[derive(Debug, Clone)]
pub struct ContactsSource {
    pub path: std::path::PathBuf,
    pub phone_column: String,
    /// The column of business-scoped user IDs (`US.1349…`), when the file has one:
    /// a row may then have a number, a BSUID, or both.
    pub bsuid_column: Option<String>,
    /// `None`: detect `,` `;` or tab from the header line.
    pub delimiter: Option<u8>,
    pub encoding: Encoding,
    pub default_region: Option<crate::phone::DefaultRegion>,
}

/// The longest record (all its fields and line breaks) the reader accepts.
pub const MAX_RECORD_BYTES: usize = 1 << 20;
/// The most columns a contacts file may have.
pub const MAX_COLUMNS: usize = 1000;

/// A problem with the contacts file as a whole: the campaign cannot be planned.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ContactsError {
    #[error("cannot open {what} {path}{setting}")]
    Open {
        /// What the file is to the user: the campaign's contacts, an import's file.
        what: &'static str,
        path: String,
        /// Where the path was set, when a file set it.
        setting: &'static str,
        source: io::Error,
    },
    #[error("{path} is empty; it needs a header row naming the columns, then one row per contact")]
    Empty { path: String },
    #[error(
        "{path} is UTF-16 text; save it as \"CSV UTF-8\" (in Excel: File > Save As > CSV UTF-8)"
    )]
    Utf16 { path: String },
    #[error(
        "{path} line {line} is not valid UTF-8; if the file came from Excel, set \
         encoding = \"windows-1252\" under [campaign], or save it as \"CSV UTF-8\""
    )]
    NotUtf8 { path: String, line: u64 },
    #[error(
        "{path} line {line} is not valid UTF-8, but lines before it are UTF-8 with accented \
         letters: the file mixes two encodings (often rows pasted from another file), and no \
         one encoding setting reads it all; re-type that line's accented letters, or open \
         the file in a spreadsheet and save it as \"CSV UTF-8\""
    )]
    MixedEncodings { path: String, line: u64 },
    #[error(
        "{path} line {line}: a record is longer than {limit} bytes; look for an unclosed \
         quote (\") on or before this line, or remove the oversized cell",
        limit = MAX_RECORD_BYTES
    )]
    RecordTooLong { path: String, line: u64 },
    #[error(
        "{path} line {line}: a quote (\") opens a cell here and is never closed, so every \
         line after it would be read as part of that one cell; close the quote (or remove \
         it) and run again"
    )]
    UnclosedQuote { path: String, line: u64 },
    #[error(
        "{path}: {percent}% NUL bytes in the first MiB: not a text file; check that this \
         is the CSV you meant (a damaged, truncated or preallocated file is mostly zeros)"
    )]
    NotText { path: String, percent: u64 },
    #[error("{path}: the header has {count} columns; at most {MAX_COLUMNS} are supported")]
    TooManyColumns { path: String, count: usize },
    #[error("{path}: no column `{column}` ({role}); the header has: {available}")]
    MissingColumn {
        path: String,
        column: String,
        role: String,
        available: String,
    },
    #[error("{path}: column `{column}` appears more than once in the header; rename one")]
    DuplicateColumn { path: String, column: String },
    #[error("{path} line {line}: {message}")]
    Malformed {
        path: String,
        line: u64,
        message: String,
    },
    #[error("reading {path}")]
    Io { path: String, source: io::Error },
}

/// One data row as read: its line in the file (what a spreadsheet calls the row when
/// no cell holds a line break) and its fields.
#[derive(Debug, Default)]
pub struct Row {
    pub line: u64,
    pub record: csv::StringRecord,
}

impl Row {
    pub fn get(&self, index: usize) -> Option<&str> {
        self.record.get(index)
    }

    pub fn is_blank(&self) -> bool {
        self.record.iter().all(|f| f.trim().is_empty())
    }
}

/// A streaming reader over a contacts file.
pub struct ContactReader {
    path: String,
    reader: csv::Reader<Box<dyn Read + Send>>,
    headers: Vec<String>,
    delimiter: u8,
    starts: RecordStarts,
    blank_rows: u64,
    /// Whether a row read so far (or the header) had letters beyond ASCII, all valid
    /// UTF-8: then a row that is not UTF-8 is a mixed file, not a Windows export.
    read_non_ascii: bool,
}

impl std::fmt::Debug for ContactReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContactReader")
            .field("path", &self.path)
            .field("headers", &self.headers)
            .finish_non_exhaustive()
    }
}

impl ContactReader {
    /// The campaign's contacts file.
    pub fn open(source: &ContactsSource) -> Result<ContactReader, ContactsError> {
        Self::open_as(
            (
                "contacts file",
                " (campaign.contacts: a path relative to the campaign file)",
            ),
            &source.path,
            source.delimiter,
            source.encoding,
        )
    }

    /// A CSV file given on the command line.
    pub fn open_path(
        path: &Path,
        delimiter: Option<u8>,
        encoding: Encoding,
    ) -> Result<ContactReader, ContactsError> {
        Self::open_as(("file", ""), path, delimiter, encoding)
    }

    fn open_as(
        (what, setting): (&'static str, &'static str),
        path: &Path,
        delimiter: Option<u8>,
        encoding: Encoding,
    ) -> Result<ContactReader, ContactsError> {
        let shown = path.display().to_string();
        let file = File::open(path).map_err(|source| ContactsError::Open {
            what,
            path: shown.clone(),
            setting,
            source,
        })?;
        // The first mebibyte is read ahead and put back in front of the rest, so a
        // file that is not text is refused before anything reads (or hashes) it all.
        let mut first = Vec::with_capacity(64 * 1024);
        let mut file = file;
        (&mut file)
            .take(NUL_WINDOW as u64)
            .read_to_end(&mut first)
            .map_err(|source| ContactsError::Io {
                path: shown.clone(),
                source,
            })?;
        if first.starts_with(&[0xFF, 0xFE]) || first.starts_with(&[0xFE, 0xFF]) {
            return Err(ContactsError::Utf16 { path: shown });
        }
        if let Some(percent) = mostly_nul(&first) {
            return Err(ContactsError::NotText {
                path: shown,
                percent,
            });
        }
        let mut buffered = BufReader::with_capacity(64 * 1024, io::Cursor::new(first).chain(file));
        let head = buffered.fill_buf().map_err(|source| ContactsError::Io {
            path: shown.clone(),
            source,
        })?;
        // UTF-16 without a BOM: every other byte of ASCII text is NUL.
        if head.len() >= 4
            && head.iter().take(512).filter(|b| **b == 0).count() * 4 > head.len().min(512)
        {
            return Err(ContactsError::Utf16 { path: shown });
        }
        let bom = head.starts_with(&[0xEF, 0xBB, 0xBF]);
        let detected =
            delimiter.unwrap_or_else(|| sniff_delimiter(&head[if bom { 3 } else { 0 }..]));
        if bom {
            buffered.consume(3);
        }
        // The BOM is how Excel marks "CSV UTF-8": it outranks a campaign file's
        // `encoding`, which may have been written for an older plain-CSV export and
        // would otherwise turn every "José" into "JosÃ©" in the messages sent.
        let encoding = if bom { Encoding::Utf8 } else { encoding };
        let decoded: Box<dyn Read + Send> = match encoding {
            Encoding::Utf8 => Box::new(buffered),
            Encoding::Windows1252 => Box::new(
                encoding_rs_io::DecodeReaderBytesBuilder::new()
                    .encoding(Some(encoding_rs::WINDOWS_1252))
                    .build(buffered),
            ),
        };
        let starts = RecordStarts::default();
        let guarded: Box<dyn Read + Send> =
            Box::new(RecordGuard::new(decoded, detected, Arc::clone(&starts)));
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(detected)
            .flexible(true)
            .has_headers(false)
            .buffer_capacity(64 * 1024)
            .from_reader(guarded);

        let mut header = csv::StringRecord::new();
        let got = reader.read_record(&mut header).map_err(|e| {
            let line = starts.lock().ok().and_then(|s| s.front().copied());
            map_csv_error(&shown, e, line)
        })?;
        if !got {
            return Err(ContactsError::Empty { path: shown });
        }
        starts.lock().ok().and_then(|mut s| s.pop_front());
        if header.len() > MAX_COLUMNS {
            return Err(ContactsError::TooManyColumns {
                path: shown,
                count: header.len(),
            });
        }
        Ok(ContactReader {
            path: shown,
            reader,
            headers: header.iter().map(|h| h.trim().to_owned()).collect(),
            read_non_ascii: !header.as_byte_record().as_slice().is_ascii(),
            delimiter: detected,
            starts,
            blank_rows: 0,
        })
    }

    /// The line the record just read (or just failed to read) started on.
    fn next_start_line(&self) -> Option<u64> {
        self.starts
            .lock()
            .ok()
            .and_then(|mut starts| starts.pop_front())
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn headers(&self) -> &[String] {
        &self.headers
    }

    pub fn delimiter(&self) -> u8 {
        self.delimiter
    }

    /// Rows skipped so far because every cell was empty (Excel exports the empty rows
    /// inside a sheet's used range as `,,,`). Empty lines are not rows and not counted.
    pub fn blank_rows(&self) -> u64 {
        self.blank_rows
    }

    /// The index of a column named in the campaign file; `role` says what it is for,
    /// so the error tells the user which setting to fix.
    pub fn column_index(&self, column: &str, role: &str) -> Result<usize, ContactsError> {
        let mut matches = self
            .headers
            .iter()
            .enumerate()
            .filter(|(_, h)| h.as_str() == column);
        match (matches.next(), matches.next()) {
            (Some((index, _)), None) => Ok(index),
            (Some(_), Some(_)) => Err(ContactsError::DuplicateColumn {
                path: self.path.clone(),
                column: column.to_owned(),
            }),
            (None, _) => Err(ContactsError::MissingColumn {
                path: self.path.clone(),
                column: column.to_owned(),
                role: role.to_owned(),
                available: self
                    .headers
                    .iter()
                    .map(|h| format!("`{h}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// Reads the next data row into `row`; `false` at the end of the file. Rows
    /// whose every cell is empty are skipped here, since they are no one.
    pub fn read_row(&mut self, row: &mut Row) -> Result<bool, ContactsError> {
        loop {
            let got = match self.reader.read_record(&mut row.record) {
                Ok(got) => got,
                Err(e) => {
                    return Err(match map_csv_error(&self.path, e, self.next_start_line()) {
                        ContactsError::NotUtf8 { path, line } if self.read_non_ascii => {
                            ContactsError::MixedEncodings { path, line }
                        }
                        other => other,
                    });
                }
            };
            if !got {
                return Ok(false);
            }
            self.read_non_ascii =
                self.read_non_ascii || !row.record.as_byte_record().as_slice().is_ascii();
            row.line = self.next_start_line().unwrap_or(0);
            if !row.is_blank() {
                return Ok(true);
            }
            self.blank_rows += 1;
        }
    }
}

/// `record_line` is where the failing record starts, as [`RecordGuard`] counted it:
/// the csv crate's own line numbers leave out blank lines and line breaks inside
/// quoted fields, so they point above the bad row in exactly the files that need it.
fn map_csv_error(path: &str, error: csv::Error, record_line: Option<u64>) -> ContactsError {
    let line = error.position().map_or(0, csv::Position::line);
    let path = path.to_owned();
    match error.into_kind() {
        csv::ErrorKind::Utf8 { pos, .. } => ContactsError::NotUtf8 {
            path,
            line: record_line.unwrap_or_else(|| pos.map_or(line, |p| p.line())),
        },
        csv::ErrorKind::Io(source) => {
            let guard = source.get_ref();
            if let Some(t) = guard.and_then(|inner| inner.downcast_ref::<RecordTooLong>()) {
                return ContactsError::RecordTooLong { path, line: t.line };
            }
            if let Some(q) = guard.and_then(|inner| inner.downcast_ref::<UnclosedQuote>()) {
                return ContactsError::UnclosedQuote { path, line: q.line };
            }
            ContactsError::Io { path, source }
        }
        other => ContactsError::Malformed {
            path,
            line,
            message: format!("{other:?}"),
        },
    }
}

/// How much of the start of a file is looked at for NUL bytes.
const NUL_WINDOW: usize = 1 << 20;

/// The share of NUL bytes in `head`, in percent, when it is more than UTF-16 text
/// could have (at most half its bytes, for plain ASCII): a sparse, preallocated or
/// zero-filled file, or a binary one. CSV text has none at all.
fn mostly_nul(head: &[u8]) -> Option<u64> {
    if head.len() < 4 {
        return None;
    }
    let nul = head.iter().filter(|b| **b == 0).count();
    // More than 60%: UTF-16 keeps its own, clearer message.
    (nul * 10 > head.len() * 6).then(|| (nul * 100 / head.len()) as u64)
}

/// Picks the delimiter that occurs most often, outside quotes, in the header line.
fn sniff_delimiter(head: &[u8]) -> u8 {
    let mut counts = [0usize; 3];
    let mut quoted = false;
    for &b in head {
        match b {
            b'"' => quoted = !quoted,
            b'\n' if !quoted => break,
            b',' if !quoted => counts[0] += 1,
            b';' if !quoted => counts[1] += 1,
            b'\t' if !quoted => counts[2] += 1,
            _ => {}
        }
    }
    let candidates = [b',', b';', b'\t'];
    let (best, count) = counts
        .iter()
        .enumerate()
        .max_by_key(|(i, c)| (**c, std::cmp::Reverse(*i)))
        .map_or((0, 0), |(i, c)| (i, *c));
    if count == 0 { b',' } else { candidates[best] }
}

#[derive(Debug)]
struct RecordTooLong {
    line: u64,
}

impl std::fmt::Display for RecordTooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "record at line {} exceeds {MAX_RECORD_BYTES} bytes",
            self.line
        )
    }
}

impl std::error::Error for RecordTooLong {}

/// The end of the file came inside a quoted cell. The csv crate would hand back
/// everything from the quote to the end as one cell of one record: a file of a
/// thousand rows with a stray quote on line 3 reads as two contacts, and a campaign
/// (or a consent import) goes to a fraction of the list with exit 0. Excluding that
/// one row and going on is no better, since the rows it swallowed are not there to
/// go on with; so the read fails, naming the line where the quote opened.
#[derive(Debug)]
struct UnclosedQuote {
    line: u64,
}

impl std::fmt::Display for UnclosedQuote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "quote opened at line {} is never closed", self.line)
    }
}

impl std::error::Error for UnclosedQuote {}

/// The line each record starts on, in order, from [`RecordGuard`] (which sees every
/// byte) to the reader (which takes one per record). The csv crate's own line counter
/// skips blank lines and CRLF breaks, so lines are counted here instead.
type RecordStarts = Arc<Mutex<VecDeque<u64>>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QuoteState {
    FieldStart,
    Unquoted,
    Quoted,
    /// A quote inside a quoted field: an escaped `""` or the closing quote.
    QuoteInQuoted,
}

/// Sits between the file and the csv parser, mirroring its quoting rules, to note the
/// line each record starts on and to fail the read once a record grows past
/// [`MAX_RECORD_BYTES`]: the csv crate would otherwise grow its buffer without bound
/// on a file with an unclosed quote.
struct RecordGuard<R> {
    inner: R,
    delimiter: u8,
    state: QuoteState,
    /// Between records, where csv skips line breaks (blank lines).
    between_records: bool,
    record_bytes: usize,
    record_start_line: u64,
    /// Where the quoted cell being read (if any) opened.
    quote_line: u64,
    line: u64,
    starts: RecordStarts,
}

impl<R> RecordGuard<R> {
    fn new(inner: R, delimiter: u8, starts: RecordStarts) -> Self {
        RecordGuard {
            inner,
            delimiter,
            state: QuoteState::FieldStart,
            between_records: true,
            record_bytes: 0,
            record_start_line: 1,
            quote_line: 1,
            line: 1,
            starts,
        }
    }
}

impl<R: Read> Read for RecordGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use QuoteState::{FieldStart, QuoteInQuoted, Quoted, Unquoted};
        let n = self.inner.read(buf)?;
        if n == 0 && self.state == Quoted && !buf.is_empty() {
            return Err(io::Error::other(UnclosedQuote {
                line: self.quote_line,
            }));
        }
        let mut starts = self
            .starts
            .lock()
            .map_err(|_| io::Error::other("record line log poisoned"))?;
        for &b in &buf[..n] {
            let line_break = matches!(b, b'\n' | b'\r');
            if self.between_records {
                if line_break {
                    self.line += u64::from(b == b'\n');
                    continue;
                }
                self.between_records = false;
                self.record_start_line = self.line;
                self.record_bytes = 0;
                starts.push_back(self.line);
            }
            self.line += u64::from(b == b'\n');
            if line_break && self.state != Quoted {
                self.state = FieldStart;
                self.between_records = true;
                continue;
            }
            if self.state == FieldStart && b == b'"' {
                self.quote_line = self.line;
            }
            self.state = match (self.state, b) {
                (Quoted, b'"') => QuoteInQuoted,
                (Quoted, _) | (QuoteInQuoted | FieldStart, b'"') => Quoted,
                (_, d) if d == self.delimiter => FieldStart,
                _ => Unquoted,
            };
            self.record_bytes += 1;
            if self.record_bytes > MAX_RECORD_BYTES {
                return Err(io::Error::other(RecordTooLong {
                    line: self.record_start_line,
                }));
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn reader_for(bytes: &[u8], encoding: Encoding) -> Result<ContactReader, ContactsError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.csv");
        std::fs::File::create(&path)
            .unwrap()
            .write_all(bytes)
            .unwrap();
        let r = ContactReader::open_path(&path, None, encoding);
        drop(dir);
        r
    }

    fn rows(r: &mut ContactReader) -> Vec<(u64, Vec<String>)> {
        let mut row = Row::default();
        let mut out = Vec::new();
        while r.read_row(&mut row).unwrap() {
            out.push((row.line, row.record.iter().map(str::to_owned).collect()));
        }
        out
    }

    #[test]
    fn semicolons_a_bom_and_crlf_are_handled() {
        let mut r = reader_for(
            b"\xEF\xBB\xBFname;phone\r\nAna;+52 55 1234 5678\r\n\r\nLuis;5512345679\r\n",
            Encoding::Utf8,
        )
        .unwrap();
        assert_eq!(r.headers(), ["name", "phone"]);
        assert_eq!(r.delimiter(), b';');
        assert_eq!(
            rows(&mut r),
            [
                (2, vec!["Ana".to_owned(), "+52 55 1234 5678".to_owned()]),
                (4, vec!["Luis".to_owned(), "5512345679".to_owned()])
            ]
        );
    }

    #[test]
    fn quoted_newlines_keep_the_starting_line() {
        let mut r = reader_for(b"phone,note\n1,\"two\nlines\"\n2,x\n", Encoding::Utf8).unwrap();
        let got = rows(&mut r);
        assert_eq!(got[0].0, 2);
        assert_eq!(got[0].1[1], "two\nlines");
        assert_eq!(got[1].0, 4);
    }

    #[test]
    fn blank_rows_are_skipped_and_counted() {
        let mut r = reader_for(b"phone,name\n1,A\n,\n\n , \n2,B\n", Encoding::Utf8).unwrap();
        let got = rows(&mut r);
        assert_eq!(
            got.iter().map(|(line, _)| *line).collect::<Vec<_>>(),
            [2, 6]
        );
        assert_eq!(r.blank_rows(), 2);
    }

    #[test]
    fn tabs_are_detected() {
        let r = reader_for(b"phone\tname\n1\tA\n", Encoding::Utf8).unwrap();
        assert_eq!(r.delimiter(), b'\t');
    }

    #[test]
    fn latin1_is_refused_unless_declared() {
        let bytes = b"name,phone\nJos\xE9,5512345678\n";
        let mut r = reader_for(bytes, Encoding::Utf8).unwrap();
        let mut row = Row::default();
        let err = r.read_row(&mut row).unwrap_err();
        assert!(
            matches!(err, ContactsError::NotUtf8 { line: 2, .. }),
            "{err}"
        );
        let mut r = reader_for(bytes, Encoding::Windows1252).unwrap();
        assert_eq!(rows(&mut r)[0].1[0], "José");
    }

    #[test]
    fn a_latin1_row_after_utf8_accents_is_a_mixed_file_not_a_windows_export() {
        let bytes = "name,phone\nJosé,5512345678\nRen\u{0}".as_bytes();
        let bytes = [&bytes[..bytes.len() - 1], b"\xE9,5523456789\n"].concat();
        let mut r = reader_for(&bytes, Encoding::Utf8).unwrap();
        let mut row = Row::default();
        assert!(r.read_row(&mut row).unwrap());
        let err = r.read_row(&mut row).unwrap_err();
        assert!(
            matches!(err, ContactsError::MixedEncodings { line: 3, .. }),
            "{err}"
        );
        assert!(!err.to_string().contains("windows-1252"), "{err}");
    }

    #[test]
    fn a_latin1_row_is_located_past_blank_lines_and_quoted_newlines() {
        let bytes = b"name,phone\r\n\"A\r\nB\",5512345678\r\n\r\n\r\nJos\xE9,5523456789\r\n";
        let mut r = reader_for(bytes, Encoding::Utf8).unwrap();
        let mut row = Row::default();
        assert!(r.read_row(&mut row).unwrap());
        let err = r.read_row(&mut row).unwrap_err();
        assert!(
            matches!(err, ContactsError::NotUtf8 { line: 6, .. }),
            "{err}"
        );
        let err = reader_for(b"\n\nnombre,tel\xE9fono\n", Encoding::Utf8).unwrap_err();
        assert!(
            matches!(err, ContactsError::NotUtf8 { line: 3, .. }),
            "{err}"
        );
    }

    #[test]
    fn a_utf8_bom_outranks_a_declared_windows_1252() {
        let mut r = reader_for(
            "\u{FEFF}name,phone\nJosé,5512345678\n".as_bytes(),
            Encoding::Windows1252,
        )
        .unwrap();
        assert_eq!(r.headers(), ["name", "phone"]);
        assert_eq!(rows(&mut r)[0].1[0], "José");
    }

    #[test]
    fn utf16_is_refused() {
        let err = reader_for(b"\xFF\xFEn\0a\0m\0e\0", Encoding::Utf8).unwrap_err();
        assert!(matches!(err, ContactsError::Utf16 { .. }));
    }

    #[test]
    fn an_unclosed_quote_cannot_swallow_memory() {
        let mut bytes = b"phone,note\n1,\"open\n".to_vec();
        bytes.extend(std::iter::repeat_n(b'x', MAX_RECORD_BYTES + 10));
        let mut r = reader_for(&bytes, Encoding::Utf8).unwrap();
        let mut row = Row::default();
        let err = r.read_row(&mut row).unwrap_err();
        assert!(
            matches!(err, ContactsError::RecordTooLong { line: 2, .. }),
            "{err}"
        );
    }
}
