//! A small syntax highlighter for code blocks in answers.
//!
//! Full grammars (syntect, tree-sitter) would multiply the UI's download size; answers
//! need readable code, not an IDE. One tokenizer covers the languages models write most
//! (Rust, Python, JavaScript/TypeScript, Go, C-family, shell, JSON, TOML, YAML, SQL): it
//! knows each one's comment markers and keywords, strings, and numbers. Output is text
//! runs with a kind, which the view wraps in spans (never HTML).

use crate::text::is_word_char;

/// What a run of code is, for colouring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Plain,
    Keyword,
    String,
    Number,
    Comment,
}

impl Kind {
    /// The CSS class of this kind (`assets` style sheet), empty for plain text.
    pub fn class(self) -> &'static str {
        match self {
            Kind::Plain => "",
            Kind::Keyword => "hl-k",
            Kind::String => "hl-s",
            Kind::Number => "hl-n",
            Kind::Comment => "hl-c",
        }
    }
}

struct Language {
    line_comments: &'static [&'static str],
    block_comment: Option<(&'static str, &'static str)>,
    keywords: &'static [&'static str],
    /// Whether `'` starts a string (not in Rust, where it is mostly a lifetime).
    single_quote_strings: bool,
}

const RUST: Language = Language {
    line_comments: &["//"],
    block_comment: Some(("/*", "*/")),
    keywords: &[
        "as", "async", "await", "break", "const", "continue", "crate", "dyn", "else", "enum", "false", "fn", "for",
        "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref", "return", "self", "Self",
        "static", "struct", "super", "trait", "true", "type", "unsafe", "use", "where", "while", "Some", "None", "Ok",
        "Err",
    ],
    single_quote_strings: false,
};
const PYTHON: Language = Language {
    line_comments: &["#"],
    block_comment: None,
    keywords: &[
        "and", "as", "assert", "async", "await", "break", "class", "continue", "def", "del", "elif", "else", "except",
        "False", "finally", "for", "from", "global", "if", "import", "in", "is", "lambda", "None", "nonlocal", "not",
        "or", "pass", "raise", "return", "True", "try", "while", "with", "yield", "self",
    ],
    single_quote_strings: true,
};
const C_LIKE: Language = Language {
    line_comments: &["//"],
    block_comment: Some(("/*", "*/")),
    keywords: &[
        "async",
        "await",
        "break",
        "case",
        "catch",
        "class",
        "const",
        "continue",
        "default",
        "defer",
        "delete",
        "do",
        "else",
        "enum",
        "export",
        "extends",
        "false",
        "finally",
        "for",
        "func",
        "function",
        "go",
        "if",
        "implements",
        "import",
        "interface",
        "let",
        "new",
        "nil",
        "null",
        "package",
        "private",
        "public",
        "return",
        "static",
        "struct",
        "switch",
        "this",
        "throw",
        "true",
        "try",
        "type",
        "typeof",
        "undefined",
        "var",
        "void",
        "while",
        "yield",
        "int",
        "char",
        "float",
        "double",
        "long",
        "unsigned",
        "bool",
        "include",
        "namespace",
        "template",
        "range",
        "map",
        "chan",
        "select",
    ],
    single_quote_strings: true,
};
const SHELL: Language = Language {
    line_comments: &["#"],
    block_comment: None,
    keywords: &[
        "if", "then", "else", "elif", "fi", "for", "in", "do", "done", "while", "case", "esac", "function", "return",
        "export", "local", "set", "echo", "cd", "sudo", "exit",
    ],
    single_quote_strings: true,
};
const DATA: Language = Language {
    line_comments: &["#"],
    block_comment: None,
    keywords: &["true", "false", "null", "yes", "no"],
    single_quote_strings: true,
};
const SQL: Language = Language {
    line_comments: &["--"],
    block_comment: Some(("/*", "*/")),
    keywords: &[
        "select", "from", "where", "insert", "into", "values", "update", "set", "delete", "create", "table", "index",
        "drop", "alter", "join", "left", "right", "inner", "outer", "on", "group", "by", "order", "having", "limit",
        "and", "or", "not", "null", "as", "primary", "key", "SELECT", "FROM", "WHERE", "INSERT", "INTO", "VALUES",
        "UPDATE", "SET", "DELETE", "CREATE", "TABLE", "INDEX", "DROP", "ALTER", "JOIN", "LEFT", "RIGHT", "INNER",
        "OUTER", "ON", "GROUP", "BY", "ORDER", "HAVING", "LIMIT", "AND", "OR", "NOT", "NULL", "AS", "PRIMARY", "KEY",
    ],
    single_quote_strings: true,
};

fn language(name: &str) -> Option<&'static Language> {
    Some(match name.to_ascii_lowercase().as_str() {
        "rust" | "rs" => &RUST,
        "python" | "py" => &PYTHON,
        "js" | "javascript" | "ts" | "typescript" | "jsx" | "tsx" | "go" | "c" | "cpp" | "c++" | "h" | "java"
        | "kotlin" | "swift" | "cs" | "csharp" => &C_LIKE,
        "sh" | "bash" | "shell" | "zsh" | "console" => &SHELL,
        "json" | "toml" | "yaml" | "yml" | "ini" => &DATA,
        "sql" | "sqlite" => &SQL,
        _ => return None,
    })
}

/// Split `code` into runs to colour. Unknown languages come back as one plain run; the
/// runs always concatenate to exactly `code`.
pub fn highlight(lang: Option<&str>, code: &str) -> Vec<(Kind, String)> {
    let Some(language) = lang.and_then(language) else {
        return vec![(Kind::Plain, code.to_owned())];
    };
    let mut runs: Vec<(Kind, String)> = Vec::new();
    let mut push = |kind: Kind, text: &str| match runs.last_mut() {
        Some((last, run)) if *last == kind => run.push_str(text),
        _ => runs.push((kind, text.to_owned())),
    };
    let mut rest = code;
    while let Some(c) = rest.chars().next() {
        if language.line_comments.iter().any(|marker| rest.starts_with(marker)) {
            let end = rest.find('\n').unwrap_or(rest.len());
            push(Kind::Comment, &rest[..end]);
            rest = &rest[end..];
        } else if let Some((open, close)) = language.block_comment.filter(|(open, _)| rest.starts_with(open)) {
            let end = rest[open.len()..].find(close).map_or(rest.len(), |i| open.len() + i + close.len());
            push(Kind::Comment, &rest[..end]);
            rest = &rest[end..];
        } else if c == '"' || c == '`' || (c == '\'' && language.single_quote_strings) {
            let end = string_end(rest, c);
            push(Kind::String, &rest[..end]);
            rest = &rest[end..];
        } else if c.is_ascii_digit() {
            let end =
                rest.find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '.' || ch == '_')).unwrap_or(rest.len());
            push(Kind::Number, &rest[..end]);
            rest = &rest[end..];
        } else if is_word_char(c) || c == '_' {
            let end = rest.find(|ch: char| !(is_word_char(ch) || ch == '_')).unwrap_or(rest.len());
            let word = &rest[..end];
            let kind = if language.keywords.contains(&word) { Kind::Keyword } else { Kind::Plain };
            push(kind, word);
            rest = &rest[end..];
        } else {
            push(Kind::Plain, &rest[..c.len_utf8()]);
            rest = &rest[c.len_utf8()..];
        }
    }
    runs
}

/// Where the string opened by `quote` at the start of `text` ends (after the closing quote,
/// or the end of the line for an unclosed one; backticks may span lines).
fn string_end(text: &str, quote: char) -> usize {
    let mut escaped = false;
    for (i, c) in text.char_indices().skip(1) {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == quote {
            return i + c.len_utf8();
        } else if c == '\n' && quote != '`' {
            return i;
        }
    }
    text.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(lang: &str, code: &str) -> Vec<(Kind, String)> {
        let runs = highlight(Some(lang), code);
        let joined: String = runs.iter().map(|(_, text)| text.as_str()).collect();
        assert_eq!(joined, code, "runs must add up to the code");
        runs.into_iter().filter(|(kind, _)| *kind != Kind::Plain).collect()
    }

    #[test]
    fn rust_keywords_strings_comments_numbers() {
        let runs = kinds("rust", "fn main() { let s = \"a \\\" b\"; // done\n let n = 42; }");
        assert_eq!(
            runs,
            vec![
                (Kind::Keyword, "fn".into()),
                (Kind::Keyword, "let".into()),
                (Kind::String, "\"a \\\" b\"".into()),
                (Kind::Comment, "// done".into()),
                (Kind::Keyword, "let".into()),
                (Kind::Number, "42".into()),
            ]
        );
    }

    #[test]
    fn lifetimes_are_not_strings_in_rust_but_quotes_are_in_python() {
        assert!(kinds("rust", "fn f<'a>(x: &'a str)").iter().all(|(k, _)| *k != Kind::String));
        assert_eq!(
            kinds("py", "x = 'hi'  # note"),
            vec![(Kind::String, "'hi'".into()), (Kind::Comment, "# note".into())]
        );
    }

    #[test]
    fn unknown_languages_and_unclosed_things_are_safe() {
        assert_eq!(highlight(Some("brainfuck"), "+++"), vec![(Kind::Plain, "+++".into())]);
        assert_eq!(highlight(None, "x"), vec![(Kind::Plain, "x".into())]);
        kinds("js", "let s = \"never closed\nnext /* open comment");
        kinds("sql", "SELECT 1 -- é ünïcode ✓");
    }
}
