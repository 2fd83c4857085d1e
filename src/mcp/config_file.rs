//! Writing MCP servers into the config file (through `config::edit`), and reading
//! `mcpServers` JSON from other apps.
//!
//! The config file is the one source of truth: `mcp.add`, `mcp.remove` and `mcp import`
//! edit it (with `toml_edit`, so the user's comments and layout survive) and the running
//! agent then reloads it, exactly as if the user had edited it by hand.

use std::collections::BTreeMap;
use std::path::Path;

use pryx_api::McpServerConfig;
use serde_json::Value;

pub use crate::config::edit::EditError;
use crate::config::edit::{edit, implicit_table};
use crate::config::is_valid_server_name;

/// Add (or, with `replace`, overwrite) servers, then check the whole file still loads
/// before it is written. Nothing is written when any entry is refused.
pub fn add_servers(path: &Path, servers: &[(String, McpServerConfig)], replace: bool) -> Result<(), EditError> {
    edit(path, |document| {
        for (name, server) in servers {
            check_server(name, server)?;
            let table = document
                .entry("mcp")
                .or_insert_with(implicit_table)
                .as_table_mut()
                .ok_or_else(|| EditError::Invalid("`mcp` in the config file is not a table".into()))?
                .entry("servers")
                .or_insert_with(implicit_table)
                .as_table_mut()
                .ok_or_else(|| EditError::Invalid("`mcp.servers` in the config file is not a table".into()))?;
            if table.contains_key(name) && !replace {
                return Err(EditError::Exists(name.clone()));
            }
            table.insert(name, toml_edit::Item::Table(server_table(server)?));
        }
        Ok(())
    })
}

/// Remove a server from the file.
pub fn remove_server(path: &Path, name: &str) -> Result<(), EditError> {
    edit(path, |document| {
        let servers = document.get_mut("mcp").and_then(|m| m.get_mut("servers")).and_then(|s| s.as_table_like_mut());
        match servers.and_then(|servers| servers.remove(name)) {
            Some(_) => Ok(()),
            None => Err(EditError::NotFound(name.to_owned())),
        }
    })
}

/// What Pryx accepts of a server: a valid name and exactly one transport.
pub fn check_server(name: &str, server: &McpServerConfig) -> Result<(), EditError> {
    if !is_valid_server_name(name) {
        return Err(EditError::Invalid(format!(
            "`{name}` is not a usable server name: use 1-32 letters, digits, `_` or `-`"
        )));
    }
    crate::config::check_mcp_server(server).map_err(|m| EditError::Invalid(format!("server `{name}`: {m}")))
}

/// The servers of an `mcpServers` document (Claude Desktop, Cursor, OpenClaw; VS Code's
/// `servers` too). Names are made valid; entries Pryx cannot run are refused with a reason.
pub fn parse_mcp_servers_json(text: &str) -> Result<Vec<(String, McpServerConfig)>, EditError> {
    let document: Value = serde_json::from_str(text).map_err(|e| EditError::Invalid(format!("not JSON: {e}")))?;
    let servers = document
        .get("mcpServers")
        .or_else(|| document.get("servers"))
        .or_else(|| document.get("mcp").and_then(|m| m.get("servers")))
        .and_then(Value::as_object)
        .ok_or_else(|| EditError::Invalid("no `mcpServers` object found".into()))?;
    let mut parsed = Vec::new();
    for (original, entry) in servers {
        let name = importable_name(original);
        let refuse = |why: &str| EditError::Invalid(format!("server `{original}`: {why}"));
        let entry = entry.as_object().ok_or_else(|| refuse("not an object"))?;
        let strings = |key: &str| -> Result<BTreeMap<String, String>, EditError> {
            let Some(map) = entry.get(key) else { return Ok(BTreeMap::new()) };
            let map = map.as_object().ok_or_else(|| refuse(&format!("`{key}` is not an object")))?;
            map.iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k.clone(), s.clone())),
                    Value::Number(_) | Value::Bool(_) => Ok((k.clone(), v.to_string())),
                    _ => Err(refuse(&format!("`{key}.{k}` is not a string"))),
                })
                .collect()
        };
        let text = |key: &str| entry.get(key).and_then(Value::as_str).map(str::to_owned);
        if entry.get("type").and_then(Value::as_str) == Some("sse") {
            return Err(refuse(
                "uses the old HTTP+SSE transport, which the MCP SDK Pryx uses no longer speaks; \
                 most servers also serve streamable HTTP (often at `/mcp`)",
            ));
        }
        let args = match entry.get("args") {
            None => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|a| a.as_str().map(str::to_owned).ok_or_else(|| refuse("`args` must be strings")))
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(refuse("`args` is not a list")),
        };
        let server = McpServerConfig {
            command: text("command"),
            args,
            env: strings("env")?,
            cwd: text("cwd"),
            url: text("url").or_else(|| text("serverUrl")),
            headers: strings("headers")?,
            enabled: !entry.get("disabled").and_then(Value::as_bool).unwrap_or(false),
            ..McpServerConfig::default()
        };
        check_server(&name, &server).map_err(|e| refuse(&e.to_string()))?;
        parsed.push((name, server));
    }
    Ok(parsed)
}

/// A config-file name for a server named elsewhere (`"My Server"` → `My-Server`).
fn importable_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '-' })
        .take(32)
        .collect();
    if cleaned.is_empty() {
        "server".into()
    } else {
        cleaned
    }
}

/// A server as a TOML table holding only what differs from the defaults.
fn server_table(server: &McpServerConfig) -> Result<toml_edit::Table, EditError> {
    let mut value = serde_json::to_value(server).map_err(|e| EditError::Invalid(e.to_string()))?;
    let defaults = serde_json::to_value(McpServerConfig::default()).map_err(|e| EditError::Invalid(e.to_string()))?;
    if let (Some(object), Some(defaults)) = (value.as_object_mut(), defaults.as_object()) {
        object.retain(|key, v| !v.is_null() && defaults.get(key) != Some(v));
    }
    let text = toml::to_string(&value).map_err(|e| EditError::Invalid(e.to_string()))?;
    let document: toml_edit::DocumentMut =
        text.parse().map_err(|e: toml_edit::TomlError| EditError::Invalid(e.to_string()))?;
    Ok(document.as_table().clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn stdio(command: &str) -> McpServerConfig {
        McpServerConfig { command: Some(command.into()), ..McpServerConfig::default() }
    }

    #[test]
    fn adding_keeps_comments_and_writes_only_what_differs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "# my settings\n[agent]\nmax_steps = 4\n").unwrap();
        let mut server = stdio("node");
        server.args = vec!["server.js".into()];
        add_servers(&path, &[("files".into(), server.clone())], false).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# my settings\n"), "{text}");
        assert!(text.contains("[mcp.servers.files]"), "{text}");
        assert!(!text.contains("call_timeout_secs"), "defaults are not written: {text}");
        let config = Config::load(&path, true).unwrap();
        assert_eq!(config.mcp.servers["files"], server);
        assert_eq!(config.agent.max_steps, 4);
    }

    #[test]
    fn an_existing_name_is_refused_unless_replacing_and_removing_works() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        add_servers(&path, &[("a".into(), stdio("one"))], false).unwrap();
        assert!(matches!(add_servers(&path, &[("a".into(), stdio("two"))], false), Err(EditError::Exists(_))));
        add_servers(&path, &[("a".into(), stdio("two"))], true).unwrap();
        assert_eq!(Config::load(&path, true).unwrap().mcp.servers["a"].command.as_deref(), Some("two"));
        remove_server(&path, "a").unwrap();
        assert!(Config::load(&path, true).unwrap().mcp.servers.is_empty());
        assert!(matches!(remove_server(&path, "a"), Err(EditError::NotFound(_))));
    }

    #[test]
    fn bad_servers_are_refused_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "# keep me\n").unwrap();
        let both = McpServerConfig { url: Some("http://x/mcp".into()), ..stdio("node") };
        let batch = [("ok".into(), stdio("node")), ("bad".into(), both)];
        let error = add_servers(&path, &batch, false).unwrap_err().to_string();
        assert!(error.contains("exactly one"), "{error}");
        assert!(add_servers(&path, &[("no good".into(), stdio("x"))], false).is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "# keep me\n");
    }

    #[test]
    fn claude_desktop_json_is_imported() {
        let json = r#"{"mcpServers": {
            "filesystem": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "/tmp"]},
            "My Remote": {"url": "https://example.com/mcp", "headers": {"Authorization": "Bearer x"}},
            "off": {"command": "x", "disabled": true, "env": {"PORT": 8080}}
        }}"#;
        let servers = parse_mcp_servers_json(json).unwrap();
        let names: Vec<_> = servers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["My-Remote", "filesystem", "off"]);
        assert_eq!(servers[1].1.args[2], "/tmp");
        assert_eq!(servers[0].1.headers["Authorization"], "Bearer x");
        assert!(!servers[2].1.enabled);
        assert_eq!(servers[2].1.env["PORT"], "8080");
    }

    #[test]
    fn unusable_json_is_a_clear_error() {
        assert!(parse_mcp_servers_json("{").unwrap_err().to_string().contains("not JSON"));
        assert!(parse_mcp_servers_json("{}").unwrap_err().to_string().contains("mcpServers"));
        let sse = r#"{"mcpServers": {"old": {"type": "sse", "url": "http://x/sse"}}}"#;
        assert!(parse_mcp_servers_json(sse).unwrap_err().to_string().contains("old HTTP+SSE"));
        let nothing = r#"{"mcpServers": {"empty": {}}}"#;
        assert!(parse_mcp_servers_json(nothing).unwrap_err().to_string().contains("exactly one"));
    }
}
