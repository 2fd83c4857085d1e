//! The function names MCP tools get in front of the model.
//!
//! A tool `read_file` of the server `files` is offered as `files__read_file`. Providers
//! differ in what they accept (OpenAI: `[a-zA-Z0-9_-]{1,64}`; Gemini also wants a letter or
//! `_` first), so names are cut down to the strictest common form: ASCII letters, digits,
//! `_` and `-`, starting with a letter or `_`, at most 64 bytes. Two tools that end up with
//! the same name get `_2`, `_3`… so no call can reach the wrong tool. Built-in tools never
//! contain `__`, so an MCP name cannot shadow one.

use std::collections::HashSet;

/// Longest function name every provider accepts.
const MAX_LEN: usize = 64;

/// Assigns exposed names for one catalogue, remembering what is taken.
#[derive(Default)]
pub struct NameAllocator {
    taken: HashSet<String>,
}

impl NameAllocator {
    /// The exposed name for `tool` of `server`, unique among the names handed out so far.
    pub fn allocate(&mut self, server: &str, tool: &str) -> String {
        let base = exposed_name(server, tool);
        let mut candidate = base.clone();
        let mut n = 2;
        while self.taken.contains(&candidate) {
            let suffix = format!("_{n}");
            candidate = format!("{}{suffix}", truncate(&base, MAX_LEN - suffix.len()));
            n += 1;
        }
        self.taken.insert(candidate.clone());
        candidate
    }
}

/// `SERVER__TOOL`, sanitised (see the module docs). Not yet de-duplicated.
pub fn exposed_name(server: &str, tool: &str) -> String {
    let mut name: String = format!("{}__{}", sanitise(server), sanitise(tool));
    if !name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        name.insert(0, '_');
    }
    truncate(&name, MAX_LEN).to_owned()
}

fn sanitise(part: &str) -> String {
    let cleaned: String =
        part.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).collect();
    if cleaned.is_empty() {
        "_".into()
    } else {
        cleaned
    }
}

/// The first `max` bytes (all ASCII by construction).
fn truncate(name: &str, max: usize) -> &str {
    &name[..name.len().min(max)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::is_valid_tool_name;

    #[test]
    fn names_join_server_and_tool() {
        assert_eq!(exposed_name("files", "read_file"), "files__read_file");
    }

    #[test]
    fn characters_providers_reject_are_replaced() {
        assert_eq!(exposed_name("my server", "get.weather/v2"), "my_server__get_weather_v2");
        assert_eq!(exposed_name("9lives", "ünïcode"), "_9lives___n_code");
        assert!(is_valid_tool_name(&exposed_name("a b", "ç")));
    }

    #[test]
    fn long_names_are_cut_to_64_bytes() {
        let name = exposed_name("server", &"x".repeat(200));
        assert_eq!(name.len(), 64);
        assert!(is_valid_tool_name(&name));
    }

    #[test]
    fn collisions_get_numbered_suffixes() {
        let mut names = NameAllocator::default();
        assert_eq!(names.allocate("s", "a.b"), "s__a_b");
        assert_eq!(names.allocate("s", "a/b"), "s__a_b_2");
        assert_eq!(names.allocate("s", "a b"), "s__a_b_3");
        let long = "y".repeat(100);
        let first = names.allocate("s", &long);
        let second = names.allocate("s", &format!("{long}!"));
        assert_ne!(first, second);
        assert!(second.len() <= 64 && second.ends_with("_2"));
    }
}
