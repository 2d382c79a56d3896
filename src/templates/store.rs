//! The template cache in the database: an account's latest complete sync.
//!
//! A sync is written in one transaction once every page has arrived, and the older
//! syncs of the account are removed in the same transaction: a reader sees the old
//! list or the new one, never half of either.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::SyncedTemplate;

/// An account's templates as last synced.
#[derive(Debug, Clone)]
pub struct Cache {
    pub account: String,
    pub origin: String,
    pub synced_at: DateTime<Utc>,
    pub templates: Vec<SyncedTemplate>,
}

impl Cache {
    /// Every language of a template.
    pub fn named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a SyncedTemplate> + 'a {
        self.templates.iter().filter(move |t| t.name == name)
    }

    /// The template in a language, whatever the spelling of its code.
    pub fn find<'a>(&'a self, name: &'a str, language: &str) -> Option<&'a SyncedTemplate> {
        let wanted = crate::campaign::normalize_language(language);
        self.named(name)
            .find(|t| crate::campaign::normalize_language(&t.language) == wanted)
    }

    /// How long ago it was synced, in words.
    pub fn age(&self) -> String {
        let seconds = (crate::clock::now() - self.synced_at).num_seconds().max(0);
        crate::ui::human_duration(u64::try_from(seconds).unwrap_or(0))
    }
}

/// Replaces the account's cache with `templates`, synced at `synced_at`.
pub fn replace(
    conn: &mut Connection,
    account: &str,
    origin: &str,
    synced_at: DateTime<Utc>,
    templates: &[SyncedTemplate],
) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.execute(
        "INSERT INTO template_syncs (account, origin, synced_at) VALUES (?1, ?2, ?3)",
        params![account, origin, crate::clock::format(synced_at)],
    )?;
    let sync_id = tx.last_insert_rowid();
    {
        let mut insert = tx.prepare_cached(
            "INSERT OR REPLACE INTO templates (sync_id, name, language, template_id, status, \
             category, quality, parameter_format, components) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        for t in templates {
            let components = serde_json::to_string(&t.components)
                .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
            insert.execute(params![
                sync_id,
                t.name,
                t.language,
                t.id,
                t.status,
                t.category,
                t.quality,
                t.parameter_format,
                components
            ])?;
        }
    }
    tx.execute(
        "DELETE FROM template_syncs WHERE account = ?1 AND id <> ?2",
        params![account, sync_id],
    )?;
    tx.commit()
}

/// The account's cache; `None` when it was never synced.
pub fn load(conn: &Connection, account: &str) -> rusqlite::Result<Option<Cache>> {
    let Some((sync_id, origin, synced_at)) = conn
        .query_row(
            "SELECT id, origin, synced_at FROM template_syncs WHERE account = ?1 \
             ORDER BY id DESC LIMIT 1",
            params![account],
            |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                ))
            },
        )
        .optional()?
    else {
        return Ok(None);
    };
    let synced_at = crate::clock::parse(&synced_at).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            format!("template_syncs.synced_at: {e}").into(),
        )
    })?;
    let mut query = conn.prepare_cached(
        "SELECT name, language, template_id, status, category, quality, parameter_format, \
         components FROM templates WHERE sync_id = ?1 ORDER BY name, language",
    )?;
    let templates = query
        .query_map(params![sync_id], |row| {
            let components: String = row.get(7)?;
            Ok(SyncedTemplate {
                name: row.get(0)?,
                language: row.get(1)?,
                id: row.get(2)?,
                status: row.get(3)?,
                category: row.get(4)?,
                quality: row.get(5)?,
                parameter_format: row.get(6)?,
                components: serde_json::from_str(&components).map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(
                        7,
                        rusqlite::types::Type::Text,
                        Box::new(e),
                    )
                })?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Some(Cache {
        account: account.to_owned(),
        origin,
        synced_at,
        templates,
    }))
}

/// The accounts with a cache, for `templates list` when none is named.
pub fn accounts(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut query = conn.prepare("SELECT DISTINCT account FROM template_syncs ORDER BY account")?;
    query
        .query_map([], |row| row.get(0))?
        .collect::<rusqlite::Result<Vec<_>>>()
}

/// What a webhook says about a template (status, quality or category), applied to
/// every cache that holds it, found by its id or by its name (and language, when
/// given: a cache imported from a file may lack ids). Returns how many changed.
pub fn update(
    conn: &Connection,
    template_id: Option<&str>,
    name: &str,
    language: Option<&str>,
    field: Field,
    value: &str,
) -> rusqlite::Result<usize> {
    let column = match field {
        Field::Status => "status",
        Field::Quality => "quality",
        Field::Category => "category",
    };
    let sql = format!(
        "UPDATE templates SET {column} = ?1 WHERE \
         (template_id = ?2 OR name = ?3) \
         AND (?4 IS NULL OR lower(replace(language, '-', '_')) = lower(replace(?4, '-', '_')))"
    );
    conn.execute(&sql, params![value, template_id, name, language])
}

/// A field a webhook may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Status,
    Quality,
    Category,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(name: &str, language: &str) -> SyncedTemplate {
        SyncedTemplate {
            id: Some(format!("id-{name}-{language}")),
            name: name.into(),
            language: language.into(),
            status: "APPROVED".into(),
            category: "UTILITY".into(),
            quality: Some("GREEN".into()),
            parameter_format: Some("POSITIONAL".into()),
            components: vec![serde_json::json!({"type": "BODY", "text": "Hola {{1}}"})],
        }
    }

    #[test]
    fn a_new_sync_replaces_the_old_one_whole_and_keeps_other_accounts() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = crate::db::Db::open(&dir.path().join("t.db")).unwrap();
        let now = crate::clock::now();
        replace(
            &mut db.conn,
            "waba:1",
            "x",
            now,
            &[template("a", "es_MX"), template("b", "es_MX")],
        )
        .unwrap();
        replace(&mut db.conn, "waba:2", "x", now, &[template("z", "en_US")]).unwrap();
        replace(&mut db.conn, "waba:1", "x", now, &[template("c", "es_MX")]).unwrap();
        let cache = load(&db.conn, "waba:1").unwrap().unwrap();
        let names: Vec<_> = cache.templates.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["c"]);
        assert_eq!(
            load(&db.conn, "waba:2").unwrap().unwrap().templates.len(),
            1
        );
        assert!(load(&db.conn, "waba:3").unwrap().is_none());
        assert!(cache.find("c", "ES-mx").is_some());
    }

    #[test]
    fn a_webhook_update_changes_the_cached_status() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = crate::db::Db::open(&dir.path().join("t.db")).unwrap();
        replace(
            &mut db.conn,
            "waba:1",
            "x",
            crate::clock::now(),
            &[template("a", "es_MX"), template("a", "en_US")],
        )
        .unwrap();
        let changed = update(&db.conn, None, "a", Some("es-MX"), Field::Status, "PAUSED").unwrap();
        assert_eq!(changed, 1);
        let cache = load(&db.conn, "waba:1").unwrap().unwrap();
        assert_eq!(cache.find("a", "es_MX").unwrap().status, "PAUSED");
        assert_eq!(cache.find("a", "en_US").unwrap().status, "APPROVED");
    }
}
