//! What people expect of any command line: completions, a manual page, colour that
//! obeys `--color never` and `NO_COLOR`, errors a script can read with `--json`, and
//! a `--help` for every command (snapshotted, so a change to one is seen in review).
//! And two of the code's own: only the journal module spells the journal's states,
//! and no two top-level modules import each other, directly or around a circle.

use assert_cmd::Command;
use clap::CommandFactory;

use crate::support::{Fixture, stdout};

/// The binary with nothing from the developer's environment deciding the output.
fn bare() -> Command {
    let mut cmd = Command::cargo_bin("wacampaign").expect("the wacampaign binary is built");
    cmd.env_remove("NO_COLOR")
        .env_remove("WACAMPAIGN_COLOR")
        .env_remove("WACAMPAIGN_DB")
        .env("COLUMNS", "100");
    cmd
}

/// Every command path: `[]`, `["send"]`, `["consent", "import"]`, ...
fn command_paths() -> Vec<Vec<String>> {
    fn walk(cmd: &clap::Command, path: Vec<String>, out: &mut Vec<Vec<String>>) {
        out.push(path.clone());
        for sub in cmd.get_subcommands() {
            if sub.get_name() == "help" {
                continue;
            }
            let mut next = path.clone();
            next.push(sub.get_name().to_owned());
            walk(sub, next, out);
        }
    }
    let mut out = Vec::new();
    walk(&wacampaign::cli::Cli::command(), Vec::new(), &mut out);
    out
}

#[test]
fn every_help_is_snapshotted() {
    let paths = command_paths();
    assert!(paths.len() > 20, "walked {} commands", paths.len());
    for path in paths {
        let out = bare()
            .args(&path)
            .arg("--help")
            .env("NO_COLOR", "1")
            .assert()
            .success();
        let help = stdout(&out);
        let name = if path.is_empty() {
            "help".to_owned()
        } else {
            format!("help_{}", path.join("_"))
        };
        assert!(
            help.contains("Example"),
            "`wacampaign {} --help` has no examples",
            path.join(" ")
        );
        insta::assert_snapshot!(name, help);
    }
}

/// Whether any ANSI escape sequence is in the bytes.
fn has_escapes(bytes: &[u8]) -> bool {
    bytes.contains(&0x1b)
}

#[test]
fn color_never_and_no_color_reach_clap_help_and_usage_errors() {
    // The control: asked for, clap colours both.
    let help = bare()
        .args(["--color", "always", "send", "--help"])
        .assert();
    assert!(has_escapes(&help.get_output().stdout));
    let error = bare()
        .args(["--color", "always", "send", "--bogus"])
        .assert();
    assert!(has_escapes(&error.get_output().stderr));

    // Flags, and a variable set in the environment.
    type Way<'a> = (&'a [&'a str], Option<(&'a str, &'a str)>);
    let ways: [Way; 4] = [
        (&["--color", "never"], None),
        (&["--color=never"], None),
        (&[], Some(("WACAMPAIGN_COLOR", "never"))),
        (&[], Some(("NO_COLOR", "1"))),
    ];
    for (flags, env) in ways {
        let run = |rest: &[&str]| {
            let mut cmd = bare();
            cmd.args(flags).args(rest);
            // A terminal is what makes `auto` colour; force clap's own hand the other way.
            cmd.env("CLICOLOR_FORCE", "1");
            if let Some((k, v)) = env {
                cmd.env(k, v);
            }
            cmd.assert()
        };
        let help = run(&["send", "--help"]).success();
        assert!(
            !has_escapes(&help.get_output().stdout),
            "{flags:?} {env:?}: help is coloured"
        );
        let error = run(&["send", "--bogus"]).code(2);
        let stderr = &error.get_output().stderr;
        assert!(
            !has_escapes(stderr),
            "{flags:?} {env:?}: usage error is coloured"
        );
        assert!(String::from_utf8_lossy(stderr).contains("--bogus"));
    }
}

#[test]
fn with_json_every_error_is_a_json_object_on_stdout() {
    let f = Fixture::new();
    let cases: [(&[&str], u8, &str); 4] = [
        // A usage error, found by clap.
        (&["send", "--bogus"], 2, "--bogus"),
        (&["nonsense"], 2, "nonsense"),
        // A command's own error.
        (&["status", "missing.toml"], 2, "missing.toml"),
        // A missing argument: clap's own help-on-error path.
        (&["status"], 2, "CAMPAIGN.toml"),
    ];
    for (args, code, mentions) in cases {
        let out = f
            .wacampaign()
            .arg("--json")
            .args(args)
            .assert()
            .code(i32::from(code));
        let text = stdout(&out);
        assert!(!text.trim().is_empty(), "{args:?}: stdout is empty");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: {text}");
        let error: serde_json::Value = serde_json::from_str(lines[0])
            .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {text}"));
        assert_eq!(error["type"], "error", "{args:?}");
        assert_eq!(error["exit_code"], code, "{args:?}");
        let message = error["message"].as_str().unwrap();
        assert!(message.contains(mentions), "{args:?}: {message}");
        assert!(!message.starts_with("error:"), "{args:?}: {message}");
    }
    // Without --json, stdout stays clean for data.
    let out = f
        .wacampaign()
        .args(["status", "missing.toml"])
        .assert()
        .code(2);
    assert!(out.get_output().stdout.is_empty());
}

#[test]
fn completions_load_in_bash_and_cover_every_shell() {
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let out = bare().args(["completions", shell]).assert().success();
        let script = stdout(&out);
        assert!(script.contains("wacampaign"), "{shell}");
        assert!(script.contains("status"), "{shell}: no subcommands");
    }
    let out = bare().args(["completions", "bash"]).assert().success();
    let f = Fixture::new();
    let script = f.write("wacampaign.bash", stdout(&out));
    if which("bash").is_none() {
        return;
    }
    // Bash itself completes `wacampaign sta` and `wacampaign status --c`.
    let probe = format!(
        "source {}\n\
         COMP_WORDS=(wacampaign sta); COMP_CWORD=1; _wacampaign wacampaign sta wacampaign; echo \"${{COMPREPLY[*]}}\"\n\
         COMP_WORDS=(wacampaign status --cs); COMP_CWORD=2; _wacampaign wacampaign --cs status; echo \"${{COMPREPLY[*]}}\"",
        script.display()
    );
    let out = std::process::Command::new("bash")
        .args(["--norc", "-c", &probe])
        .output()
        .expect("running bash");
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.first(),
        Some(&"status"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(lines.get(1).is_some_and(|l| l.contains("--csv")), "{text}");
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
    })
}

#[test]
fn the_man_page_renders() {
    let out = bare().arg("man").assert().success();
    let roff = stdout(&out);
    assert!(roff.starts_with(".ie \\n(.g .ds Aq") || roff.contains(".TH wacampaign 1"));
    assert!(roff.contains(".TH wacampaign 1"), "{roff}");
    assert!(roff.contains(".SH NAME") && roff.contains(".SH SYNOPSIS"));
    let f = Fixture::new();
    bare()
        .args(["man", "--dir"])
        .arg(f.path("man1"))
        .assert()
        .success();
    for page in [
        "wacampaign.1",
        "wacampaign-send.1",
        "wacampaign-consent-import.1",
    ] {
        let text = f.read(&format!("man1/{page}"));
        assert!(text.contains(".SH SYNOPSIS"), "{page}");
    }
    if which("man").is_none() {
        return;
    }
    let page = f.path("man1/wacampaign-status.1");
    let out = std::process::Command::new("man")
        .arg("-l")
        .arg(&page)
        .env("MANPAGER", "cat")
        .env("PAGER", "cat")
        .env("MANWIDTH", "100")
        .output()
        .expect("running man");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("NAME") && text.contains("wacampaign-status"),
        "{text}"
    );
    assert!(!text.contains(".SH"), "roff left unrendered:\n{text}");
}

// ---- the README: its first command, and the database's tables ----

/// A copy of the shipped `campaigns/` directory in `f`, as a fresh clone has it.
pub fn copy_campaigns(f: &Fixture) {
    let to = f.path("campaigns");
    std::fs::create_dir_all(&to).unwrap();
    for entry in std::fs::read_dir(crate::support::shipped_campaigns()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// The README's first command line, run as written (`cargo run --release -q --`
/// being the binary) in a fresh copy of the repository's campaigns.
pub fn run_readme_demo(f: &Fixture) {
    let readme = include_str!("../../README.md");
    let block = &readme[readme.find("```sh\n").expect("a sh block") + 6..];
    let first = block.lines().next().unwrap();
    copy_campaigns(f);
    for step in first.split(" && ") {
        let args = step
            .strip_prefix("cargo run --release -q -- ")
            .unwrap_or_else(|| panic!("`{step}` is not a cargo run of the binary"));
        f.wacampaign()
            .args(args.split_whitespace())
            .env("NO_COLOR", "1")
            .assert()
            .success();
    }
}

/// Every `check` and `preview` example in `--help` runs as written, shell quoting
/// and all, on a fresh copy of the shipped campaigns whose contacts opted in, as
/// the README's first step has a reader record. (A trailing comment and a pipe
/// into another tool are the reader's, not ours.)
#[test]
fn the_check_and_preview_examples_in_help_run_on_the_shipped_campaigns() {
    let f = Fixture::new();
    copy_campaigns(&f);
    f.wacampaign()
        .args([
            "consent",
            "import",
            "campaigns/promotion.csv",
            "--purpose",
            "marketing",
            "--method",
            "web_form",
            "--phone-column",
            "telefono",
            "--default-region",
            "MX",
        ])
        .assert()
        .success();
    let bin = std::path::PathBuf::from(env!("CARGO_BIN_EXE_wacampaign"));
    let path = format!(
        "{}:{}",
        bin.parent().expect("the binary's directory").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut ran = 0;
    for command in ["check", "preview"] {
        let help = stdout(&bare().args(["help", command]).assert().success());
        let examples = help
            .lines()
            .skip_while(|l| !l.starts_with("Examples:"))
            .filter_map(|l| l.trim().strip_prefix("wacampaign "));
        for example in examples {
            let example = example.split(" #").next().unwrap_or(example);
            let example = example.split(" | ").next().unwrap_or(example).trim();
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("wacampaign {example}"))
                .current_dir(f.path(""))
                .env("PATH", &path)
                .env("WACAMPAIGN_DB", f.path("wacampaign.db"))
                .env("NO_COLOR", "1")
                .output()
                .expect("running sh");
            assert!(
                out.status.success(),
                "`wacampaign {example}` exited {:?}: {}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr)
            );
            ran += 1;
        }
    }
    assert!(ran >= 10, "only {ran} examples found");
}

/// The `sql` blocks of the README's database section, by their `-- name` line.
pub fn database_section() -> (&'static str, Vec<(String, String)>) {
    let readme = include_str!("../../README.md");
    let start = readme
        .find("## The database, table by table")
        .expect("the README documents the database");
    let section = &readme[start..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |e| e + 3)];
    let queries = section
        .split("```sql\n")
        .skip(1)
        .map(|block| {
            let sql = &block[..block.find("\n```").expect("a closed block")];
            let name = sql.lines().next().unwrap().trim_start_matches("-- ");
            (name.to_owned(), sql.to_owned())
        })
        .collect();
    (section, queries)
}

#[test]
fn the_readme_demo_records_evidence_and_documents_every_table() {
    let f = Fixture::new();
    run_readme_demo(&f);
    let out = f
        .wacampaign()
        .args(["--json", "consent", "stats"])
        .assert()
        .success();
    let stats: serde_json::Value =
        serde_json::from_str(stdout(&out).lines().next().unwrap()).unwrap();
    assert_eq!(stats["data"]["opt_ins_without_evidence"], 0, "{stats}");
    assert_eq!(stats["data"]["marketing"]["opted_in"], 263, "{stats}");

    let (section, queries) = database_section();
    let db = rusqlite::Connection::open(f.path("wacampaign.db")).unwrap();
    let tables: Vec<String> = db
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(tables.len() >= 19, "{tables:?}");
    for table in &tables {
        assert!(
            section.contains(&format!("| `{table}` |")),
            "the README's database section does not describe `{table}`"
        );
    }
    assert!(queries.len() >= 6);
    for (name, sql) in &queries {
        let mut stmt = db
            .prepare(sql)
            .unwrap_or_else(|e| panic!("README query `{name}`: {e}"));
        let rows = stmt.query_map([], |_| Ok(())).unwrap().count();
        if [
            "campaigns",
            "a campaign by state",
            "each message's latest delivery status",
        ]
        .contains(&name.as_str())
        {
            assert!(
                rows > 0,
                "README query `{name}` finds nothing after the demo"
            );
        }
    }
}

/// Where each source file under `dir` is, recursively.
fn rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every `'state'` or `"state"` outside comments in the file at `path`, as
/// `file:line: text`, but for the lines `exempt` names.
fn state_spellings(path: &std::path::Path, shown_as: &str, exempt: &[(&str, &str)]) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{shown_as}: {e}"));
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.trim();
        if code.starts_with("//") {
            continue;
        }
        let spelt = wacampaign::journal::State::ALL.iter().any(|state| {
            let name = state.as_str();
            code.contains(&format!("'{name}'")) || code.contains(&format!("\"{name}\""))
        });
        let excused = exempt
            .iter()
            .any(|(file, fragment)| *file == shown_as && code.contains(fragment));
        if spelt && !excused {
            found.push(format!("{shown_as}:{}: {code}", n + 1));
        }
    }
    found
}

/// Words that are spelt like a journal state but belong to another vocabulary: a
/// provider's message statuses, command-line names, labels printed for people.
const NOT_JOURNAL_STATES: &[(&str, &str)] = &[
    (
        "src/cmd/send.rs",
        "conflicts_with_all = [\"dry_run\", \"limit\", \"in_doubt\"",
    ),
    ("src/cmd/status.rs", "\"failed\","),
    (
        "src/exclusion.rs",
        "ExclusionKind::OptedOut => \"opted_out\"",
    ),
    ("src/followup.rs", "Only::Failed => \"failed\""),
    ("src/provider/simulator.rs", "status: Some(\"accepted\""),
    ("src/report/figures.rs", "stage(\"planned\""),
    ("src/report/figures.rs", "\"deferred\","),
    ("src/report/figures.rs", "\"failed\","),
    ("src/report/mod.rs", "ui.bold(\"deferred\")"),
    ("src/send/progress.rs", "data[\"failed\"]"),
    ("src/webhook/meta.rs", "\"status\": \"failed\""),
    ("src/webhook/meta.rs", "status.status, \"failed\""),
    ("src/webhook/store.rs", "status.status == \"failed\""),
    ("src/webhook/store.rs", "status(\"wamid."),
    (
        "src/webhook/store.rs",
        "statuses = [\"read\", \"sent\", \"failed\"",
    ),
    ("src/webhook/store.rs", "(statuses, [\"queued\", \"sent\""),
];

/// The journal's states and transitions live in `src/journal/` (issue 9): SQL
/// elsewhere asks it, or binds a `State`, so a renamed or added state cannot be
/// missed in a query nobody remembers.
#[test]
fn only_the_journal_module_spells_the_journal_states() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    files.sort();
    let shown = |path: &std::path::Path| {
        path.strip_prefix(root)
            .expect("under the crate")
            .to_string_lossy()
            .replace('\\', "/")
    };
    // The scan sees the states where they belong, so its silence elsewhere means
    // something.
    let journal = files
        .iter()
        .filter(|p| shown(p).starts_with("src/journal/"))
        .flat_map(|p| state_spellings(p, &shown(p), &[]))
        .count();
    assert!(
        journal > 10,
        "the scan found {journal} spellings in src/journal/"
    );

    let found: Vec<String> = files
        .iter()
        .filter(|p| {
            let s = shown(p);
            !s.starts_with("src/journal/") && !s.starts_with("src/db/migrations/")
        })
        .flat_map(|p| state_spellings(p, &shown(p), NOT_JOURNAL_STATES))
        .collect();
    assert!(
        found.is_empty(),
        "journal states spelt outside src/journal/; ask the journal module, or bind a \
         `State`:\n{}",
        found.join("\n")
    );
}

/// The text of a source file without its unit tests (`#[cfg(test)] mod tests { … }`,
/// which close each file): a test may open the database from any module.
fn without_unit_tests(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let end = lines
        .windows(2)
        .position(|w| {
            w[0].trim() == "#[cfg(test)]"
                && w[1].trim_start().starts_with("mod ")
                && w[1].trim_end().ends_with('{')
        })
        .unwrap_or(lines.len());
    lines[..end].join("\n")
}

/// `a -> b` for each top-level module `a` whose code (outside its unit tests and
/// comments) names `crate::b`, with the first place it does.
fn module_imports() -> std::collections::BTreeMap<(String, String), String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = root.join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let module_of = |path: &std::path::Path| -> Option<String> {
        let rel = path.strip_prefix(&src).ok()?;
        let first = rel.components().next()?.as_os_str().to_str()?;
        let name = first.strip_suffix(".rs").unwrap_or(first);
        (name != "lib" && name != "main").then(|| name.to_owned())
    };
    let modules: std::collections::BTreeSet<String> =
        files.iter().filter_map(|p| module_of(p)).collect();
    let mut arrows = std::collections::BTreeMap::new();
    for path in &files {
        let Some(from) = module_of(path) else {
            continue;
        };
        let text = std::fs::read_to_string(path).expect("a source file");
        for (n, line) in without_unit_tests(&text).lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for (at, _) in line.match_indices("crate::") {
                let name: String = line[at + "crate::".len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if name != from && modules.contains(&name) {
                    let place = format!(
                        "{}:{}",
                        path.strip_prefix(root).unwrap_or(path).display(),
                        n + 1
                    );
                    arrows.entry((from.clone(), name)).or_insert(place);
                }
            }
        }
    }
    arrows
}

/// Issue 9: "there is no import circle among the source modules". A module that
/// needs something of one above it takes the shared piece down instead.
#[test]
fn no_import_circle_among_the_top_level_modules() {
    let arrows = module_imports();
    // The scan reads imports, so its finding no circle means something.
    assert!(arrows.len() > 50, "only {} imports found", arrows.len());
    assert!(arrows.contains_key(&("journal".to_owned(), "campaign".to_owned())));

    let mut next: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for (from, to) in arrows.keys() {
        next.entry(from).or_default().push(to);
    }
    // Depth first: a module met again while still on the path closes a circle.
    fn visit<'a>(
        module: &'a str,
        next: &std::collections::BTreeMap<&'a str, Vec<&'a str>>,
        path: &mut Vec<&'a str>,
        done: &mut std::collections::BTreeSet<&'a str>,
    ) -> Option<Vec<&'a str>> {
        if let Some(start) = path.iter().position(|m| *m == module) {
            let mut circle = path[start..].to_vec();
            circle.push(module);
            return Some(circle);
        }
        if !done.insert(module) {
            return None;
        }
        path.push(module);
        for to in next.get(module).into_iter().flatten() {
            if let Some(circle) = visit(to, next, path, done) {
                return Some(circle);
            }
        }
        path.pop();
        None
    }
    let mut done = std::collections::BTreeSet::new();
    for module in next.keys() {
        if let Some(circle) = visit(module, &next, &mut Vec::new(), &mut done) {
            let steps: Vec<String> = circle
                .windows(2)
                .map(|w| {
                    format!(
                        "  {} -> {} ({})",
                        w[0],
                        w[1],
                        arrows[&(w[0].to_owned(), w[1].to_owned())]
                    )
                })
                .collect();
            panic!("an import circle:\n{}", steps.join("\n"));
        }
    }
}
