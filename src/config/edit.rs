//! Changing the config file from the API (the Control Center edits settings this way).
//!
//! The file stays the one source of truth: edits go through `toml_edit`, so the user's
//! comments and layout survive, and a change is written only if the whole file still
//! loads, atomically, keeping the file's permissions. The running agent then applies the
//! new value (MCP servers reload, tool rules swap) without a restart.

use std::path::Path;

use crate::approvals::Rule;
use crate::config::{Config, ConfigError};

/// Why the config file could not be changed.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error("{0}")]
    Invalid(String),
    #[error("an MCP server named `{0}` already exists (remove it first, or replace it)")]
    Exists(String),
    #[error("there is no MCP server named `{0}`")]
    NotFound(String),
    #[error("the config file {path} cannot be used: {message}")]
    File { path: String, message: String },
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// Set `[policy.tools] TOOL = RULE`, or remove the line (`None`: back to the default).
pub fn set_tool_rule(path: &Path, tool: &str, rule: Option<Rule>) -> Result<(), EditError> {
    edit(path, |document| {
        let policy = document
            .entry("policy")
            .or_insert_with(implicit_table)
            .as_table_mut()
            .ok_or_else(|| EditError::Invalid("`policy` in the config file is not a table".into()))?;
        let tools = policy
            .entry("tools")
            .or_insert_with(|| toml_edit::Item::Table(toml_edit::Table::new()))
            .as_table_mut()
            .ok_or_else(|| EditError::Invalid("`policy.tools` in the config file is not a table".into()))?;
        match rule {
            Some(rule) => {
                tools.insert(tool, toml_edit::value(rule.as_str()));
            }
            None => {
                tools.remove(tool);
            }
        }
        Ok(())
    })
}

/// Set (`Some`) or remove (`None`) keys of one table, e.g. `[llm] base_url`; `table` may
/// be a dotted path (`telemetry.otlp.headers`), created as needed.
pub fn set_values(path: &Path, table: &str, values: &[(&str, Option<&str>)]) -> Result<(), EditError> {
    let values: Vec<(&str, Option<toml_edit::Value>)> =
        values.iter().map(|(key, value)| (*key, value.map(toml_edit::Value::from))).collect();
    set_items(path, table, &values)
}

/// [`set_values`] for values of any TOML type (a bool, a number).
pub fn set_items(path: &Path, table: &str, values: &[(&str, Option<toml_edit::Value>)]) -> Result<(), EditError> {
    set_tables(path, &[(table, values)])
}

/// Keys of one table to set (`Some`) or remove (`None`).
pub type Changes<'a> = &'a [(&'a str, Option<toml_edit::Value>)];

/// Change several tables in one edit: all of it is written, or none.
pub fn set_tables(path: &Path, tables: &[(&str, Changes<'_>)]) -> Result<(), EditError> {
    edit(path, |document| {
        for (table, values) in tables {
            let mut section = document.as_table_mut();
            for (depth, name) in table.split('.').enumerate() {
                let last = depth == table.split('.').count() - 1;
                section = section
                    .entry(name)
                    .or_insert_with(|| {
                        if last {
                            toml_edit::Item::Table(toml_edit::Table::new())
                        } else {
                            implicit_table()
                        }
                    })
                    .as_table_mut()
                    .ok_or_else(|| EditError::Invalid(format!("`{table}` in the config file is not a table")))?;
            }
            for (key, value) in values.iter() {
                match value {
                    Some(value) => {
                        section.insert(key, toml_edit::Item::Value(value.clone()));
                    }
                    None => {
                        section.remove(key);
                    }
                }
            }
        }
        Ok(())
    })
}

/// Read the file, change it with `change`, and write it if it still loads; one edit at a
/// time in this process, so concurrent API calls (a rule, a server, the provider) cannot
/// drop each other's changes.
pub(crate) fn edit(
    path: &Path,
    change: impl FnOnce(&mut toml_edit::DocumentMut) -> Result<(), EditError>,
) -> Result<(), EditError> {
    static ONE_EDIT_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _edit = ONE_EDIT_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut document = read_document(path)?;
    change(&mut document)?;
    write_checked(path, &document)
}

pub(crate) fn implicit_table() -> toml_edit::Item {
    let mut table = toml_edit::Table::new();
    table.set_implicit(true);
    toml_edit::Item::Table(table)
}

fn read_document(path: &Path) -> Result<toml_edit::DocumentMut, EditError> {
    let file_error = |message: String| EditError::File { path: path.display().to_string(), message };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(file_error(e.to_string())),
    };
    text.parse().map_err(|e: toml_edit::TomlError| file_error(e.to_string()))
}

/// Write `document` only if it still loads as a whole config, atomically, keeping the
/// file's permissions (0600 for a new file: it may hold secret references and headers).
fn write_checked(path: &Path, document: &toml_edit::DocumentMut) -> Result<(), EditError> {
    let text = document.to_string();
    Config::parse(&text, path)?;
    let file_error = |e: std::io::Error| EditError::File { path: path.display().to_string(), message: e.to_string() };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(file_error)?;
    }
    let tmp = path.with_extension("toml.pryx-tmp");
    {
        use std::io::Write;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp).map_err(file_error)?;
        file.write_all(text.as_bytes()).map_err(file_error)?;
        file.sync_all().map_err(file_error)?;
    }
    if let Ok(metadata) = std::fs::metadata(path) {
        let _ = std::fs::set_permissions(&tmp, metadata.permissions());
    }
    std::fs::rename(&tmp, path).map_err(file_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_rules_are_written_removed_and_comments_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "# my settings\n[policy]\nshell_allow = [\"git status\"]\n").unwrap();
        set_tool_rule(&path, "fs_write", Some(Rule::Allow)).unwrap();
        set_tool_rule(&path, "shell_execute", Some(Rule::Deny)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# my settings\n"), "{text}");
        let config = Config::parse(&text, &path).unwrap();
        assert_eq!(config.policy.tools.get("fs_write"), Some(&Rule::Allow));
        assert_eq!(config.policy.tools.get("shell_execute"), Some(&Rule::Deny));
        assert_eq!(config.policy.shell_allow, ["git status"]);
        set_tool_rule(&path, "fs_write", None).unwrap();
        let config = Config::parse(&std::fs::read_to_string(&path).unwrap(), &path).unwrap();
        assert_eq!(config.policy.tools.get("fs_write"), None);
    }

    #[test]
    fn edits_at_the_same_time_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::thread::scope(|scope| {
            for i in 0..8 {
                let path = &path;
                scope.spawn(move || set_tool_rule(path, &format!("tool_{i}"), Some(Rule::Deny)).unwrap());
            }
            scope.spawn(|| set_values(&path, "llm", &[("model", Some("m"))]).unwrap());
        });
        let config = Config::parse(&std::fs::read_to_string(&path).unwrap(), &path).unwrap();
        assert_eq!(config.policy.tools.len(), 8, "{:?}", config.policy.tools);
        assert_eq!(config.llm.model.as_deref(), Some("m"));
    }

    #[test]
    fn values_are_set_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "[llm]\nmodel = \"old\"\ncontext_window_tokens = 8000\n").unwrap();
        set_values(&path, "llm", &[("base_url", Some("http://127.0.0.1:1/v1")), ("model", None)]).unwrap();
        let config = Config::parse(&std::fs::read_to_string(&path).unwrap(), &path).unwrap();
        assert_eq!(config.llm.base_url.as_deref(), Some("http://127.0.0.1:1/v1"));
        assert_eq!((config.llm.model, config.llm.context_window_tokens), (None, 8000));
        assert!(
            set_values(&path, "llm", &[("context_window_tokens", Some("many"))]).is_err(),
            "checked before writing"
        );
    }

    #[test]
    fn nested_tables_and_typed_values_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "# mine\n[telemetry]\nretention_days = 3\n").unwrap();
        set_items(&path, "telemetry", &[("capture_content", Some(true.into()))]).unwrap();
        set_values(&path, "telemetry.otlp.headers", &[("authorization", Some("secret:otlp/auth"))]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let config = Config::parse(&text, &path).unwrap();
        assert!(config.telemetry.capture_content);
        assert_eq!(config.telemetry.retention_days, 3);
        assert_eq!(config.telemetry.otlp.headers["authorization"], "secret:otlp/auth");
        assert!(text.starts_with("# mine") && text.contains("[telemetry.otlp.headers]"), "{text}");
        assert!(!text.contains("[telemetry.otlp]\n"), "the table between stays implicit: {text}");
    }

    #[test]
    fn several_tables_change_together_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "[tools]\n").unwrap();
        let good: &[(&str, Option<toml_edit::Value>)] = &[("workspace", Some("/srv/work".into()))];
        let bad: &[(&str, Option<toml_edit::Value>)] = &[("retention_days", Some("forever".into()))];
        assert!(set_tables(&path, &[("tools", good), ("telemetry", bad)]).is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "[tools]\n", "nothing of it written");
        let fine: &[(&str, Option<toml_edit::Value>)] = &[("retention_days", Some(3i64.into()))];
        set_tables(&path, &[("tools", good), ("telemetry", fine)]).unwrap();
        let config = Config::parse(&std::fs::read_to_string(&path).unwrap(), &path).unwrap();
        assert_eq!(config.tools.workspace.as_deref(), Some(std::path::Path::new("/srv/work")));
        assert_eq!(config.telemetry.retention_days, 3);
    }

    #[test]
    fn a_file_that_does_not_load_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "[policy]\ntools = 3\n").unwrap();
        assert!(set_tool_rule(&path, "fs_write", Some(Rule::Allow)).is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "[policy]\ntools = 3\n");
    }
}
