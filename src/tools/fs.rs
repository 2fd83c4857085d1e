//! File tools, all scoped to the [`Workspace`]: `fs_read`, `fs_write`, `fs_list`,
//! `fs_search`, `fs_delete`.
//!
//! Every access goes through a cap-std directory handle (see `crate::sandbox::workspace`), so no path,
//! symlink or race can reach outside the workspace and the configured extra roots. Outputs
//! are capped so one call cannot flood the model's context.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use cap_std::fs::OpenOptions;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use super::{parse_args, schema, Risk, Tool, ToolContext, ToolError};
use crate::sandbox::workspace::{check_single_link, real_path, Workspace, WorkspaceError};

/// Most bytes `fs_read` returns.
pub const MAX_READ_BYTES: usize = 256 * 1024;
/// Most entries `fs_list` returns.
pub const MAX_LIST_ENTRIES: usize = 1000;
/// Most matching lines `fs_search` returns.
pub const MAX_SEARCH_MATCHES: usize = 200;

impl From<WorkspaceError> for ToolError {
    fn from(e: WorkspaceError) -> Self {
        ToolError::Failed(e.to_string())
    }
}

/// The five file tools, sharing one workspace.
pub fn tools(workspace: Arc<Workspace>) -> Vec<Arc<dyn Tool>> {
    vec![
        Arc::new(FsRead(workspace.clone())),
        Arc::new(FsWrite(workspace.clone())),
        Arc::new(FsList(workspace.clone())),
        Arc::new(FsSearch(workspace.clone())),
        Arc::new(FsDelete(workspace)),
    ]
}

/// Run blocking file work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ToolError> + Send + 'static,
) -> Result<T, ToolError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| ToolError::Failed(format!("the file task failed: {e}")))?
}

// ---- fs_read ----

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ReadArgs {
    /// Path relative to the workspace.
    path: String,
    /// First line to return, 1-based (default 1).
    start_line: Option<usize>,
    /// Last line to return, inclusive (default: the end, within the size cap).
    end_line: Option<usize>,
}

struct FsRead(Arc<Workspace>);

#[async_trait]
impl Tool for FsRead {
    fn name(&self) -> &str {
        "fs_read"
    }
    fn description(&self) -> &str {
        "Read a UTF-8 text file in the workspace, optionally only lines start_line..=end_line. Large files are cut at 256 KiB; ask for a line range to see more."
    }
    fn parameters(&self) -> Value {
        schema::<ReadArgs>()
    }
    fn risk(&self) -> Risk {
        Risk::Read
    }
    fn summary(&self, arguments: &Value) -> String {
        format!("read {}", arguments["path"].as_str().unwrap_or("?"))
    }
    async fn call(&self, arguments: Value, _ctx: &ToolContext) -> Result<String, ToolError> {
        let args: ReadArgs = parse_args(arguments)?;
        let ws = self.0.clone();
        blocking(move || {
            let target = ws.resolve(&args.path)?;
            let file = target.root.dir.open(target.rel()).map_err(|e| WorkspaceError::io(&target.shown, e))?;
            let mut file = file.into_std();
            ws.check_opened(&file, &target.shown)?;
            check_single_link(&file, &target.shown)?;
            if file.metadata().map(|m| m.is_dir()).unwrap_or(false) {
                return Err(ToolError::Failed(format!("`{}` is a directory; use fs_list", target.shown)));
            }
            let start = args.start_line.unwrap_or(1).max(1);
            let end = args.end_line.unwrap_or(usize::MAX);
            if end < start {
                return Err(ToolError::InvalidArguments("end_line is before start_line".into()));
            }
            // Read at most what a line range could need: the whole file for ranges (bounded by
            // the output cap below), the cap plus one byte otherwise to detect truncation.
            let mut bytes = Vec::new();
            Read::by_ref(&mut file)
                .take(if args.start_line.is_some() { 64 * 1024 * 1024 } else { MAX_READ_BYTES as u64 + 1 })
                .read_to_end(&mut bytes)
                .map_err(|e| WorkspaceError::io(&target.shown, e))?;
            if bytes.contains(&0) {
                return Err(ToolError::Failed(format!("`{}` looks binary; fs_read reads text only", target.shown)));
            }
            let text = String::from_utf8_lossy(&bytes);
            let mut out = String::new();
            let mut truncated = false;
            let mut total_lines = 0;
            for (i, line) in text.split_inclusive('\n').enumerate() {
                let number = i + 1;
                total_lines = number;
                if number < start || number > end {
                    continue;
                }
                if out.len() + line.len() > MAX_READ_BYTES {
                    truncated = true;
                    break;
                }
                out.push_str(line);
            }
            if truncated || (args.start_line.is_none() && bytes.len() > MAX_READ_BYTES) {
                out.push_str(&format!(
                    "\n[… cut at {} KiB; read more with start_line/end_line (file has at least {total_lines} lines)]",
                    MAX_READ_BYTES / 1024
                ));
            }
            Ok(out)
        })
        .await
    }
}

// ---- fs_write ----

#[derive(Deserialize, JsonSchema, Clone, Copy, PartialEq)]
#[serde(rename_all = "snake_case")]
enum WriteMode {
    /// Make a new file; fail if it exists.
    Create,
    /// Replace the file's content (create it if missing).
    Overwrite,
    /// Add to the end of the file (create it if missing).
    Append,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct WriteArgs {
    /// Path relative to the workspace; missing parent directories are created.
    path: String,
    /// The text to write.
    content: String,
    /// `create` (default), `overwrite` or `append`.
    mode: Option<WriteMode>,
}

struct FsWrite(Arc<Workspace>);

#[async_trait]
impl Tool for FsWrite {
    fn name(&self) -> &str {
        "fs_write"
    }
    fn description(&self) -> &str {
        "Write a text file in the workspace: create a new file (default), overwrite, or append. Parent directories are created."
    }
    fn parameters(&self) -> Value {
        schema::<WriteArgs>()
    }
    fn risk(&self) -> Risk {
        Risk::Write
    }
    fn summary(&self, arguments: &Value) -> String {
        let mode = arguments["mode"].as_str().unwrap_or("create");
        let bytes = arguments["content"].as_str().map_or(0, str::len);
        format!("{mode} {} ({bytes} bytes)", arguments["path"].as_str().unwrap_or("?"))
    }
    async fn call(&self, arguments: Value, _ctx: &ToolContext) -> Result<String, ToolError> {
        let args: WriteArgs = parse_args(arguments)?;
        let ws = self.0.clone();
        blocking(move || {
            let target = ws.resolve(&args.path)?;
            if target.relative.as_os_str().is_empty() {
                return Err(ToolError::InvalidArguments("a file name is needed".into()));
            }
            let parent = target.relative.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            let Some(name) = target.relative.file_name() else {
                return Err(ToolError::InvalidArguments("a file name is needed".into()));
            };
            target.root.dir.create_dir_all(parent).map_err(|e| WorkspaceError::io(&target.shown, e))?;
            // The file is made in the directory as opened and checked, whatever links led there.
            let parent = target.root.dir.open_dir(parent).map_err(|e| WorkspaceError::io(&target.shown, e))?;
            ws.check_opened(&parent, &target.shown)?;
            let mode = args.mode.unwrap_or(WriteMode::Create);
            let mut options = OpenOptions::new();
            options.write(true);
            match mode {
                WriteMode::Create => options.create_new(true),
                WriteMode::Overwrite => options.create(true),
                WriteMode::Append => options.create(true).append(true),
            };
            let file = parent.open_with(name, &options).map_err(|e| WorkspaceError::io(&target.shown, e))?;
            let mut file = file.into_std();
            ws.check_opened(&file, &target.shown)?;
            check_single_link(&file, &target.shown)?;
            if mode == WriteMode::Overwrite {
                file.set_len(0).map_err(|e| WorkspaceError::io(&target.shown, e))?;
            }
            file.write_all(args.content.as_bytes()).map_err(|e| WorkspaceError::io(&target.shown, e))?;
            file.sync_all().map_err(|e| WorkspaceError::io(&target.shown, e))?;
            let verb = match mode {
                WriteMode::Create => "created",
                WriteMode::Overwrite => "wrote",
                WriteMode::Append => "appended to",
            };
            Ok(format!("{verb} {} ({} bytes)", target.shown, args.content.len()))
        })
        .await
    }
}

// ---- fs_list ----

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ListArgs {
    /// Directory relative to the workspace (default: the workspace itself).
    path: Option<String>,
    /// How deep to go: 1 lists the directory only (default 2, at most 10).
    depth: Option<usize>,
    /// Include files that .gitignore or .ignore would hide (default false).
    include_ignored: Option<bool>,
}

struct FsList(Arc<Workspace>);

#[async_trait]
impl Tool for FsList {
    fn name(&self) -> &str {
        "fs_list"
    }
    fn description(&self) -> &str {
        "List files and directories in the workspace, recursively to a depth, skipping what .gitignore hides. Directories end with `/`."
    }
    fn parameters(&self) -> Value {
        schema::<ListArgs>()
    }
    fn risk(&self) -> Risk {
        Risk::Read
    }
    fn summary(&self, arguments: &Value) -> String {
        format!("list {}", arguments["path"].as_str().unwrap_or("."))
    }
    async fn call(&self, arguments: Value, _ctx: &ToolContext) -> Result<String, ToolError> {
        let args: ListArgs = parse_args(arguments)?;
        let ws = self.0.clone();
        blocking(move || {
            let (start, shown) = ws.resolve_dir(args.path.as_deref().unwrap_or(""))?;
            let depth = args.depth.unwrap_or(2).clamp(1, 10);
            let skip = ws.clone();
            let walker = ignore::WalkBuilder::new(&start)
                .filter_entry(move |entry| !skip.is_private(entry.path()))
                .max_depth(Some(depth))
                .follow_links(false)
                .hidden(false)
                .git_ignore(!args.include_ignored.unwrap_or(false))
                .ignore(!args.include_ignored.unwrap_or(false))
                .require_git(false)
                .sort_by_file_name(|a, b| a.cmp(b))
                .build();
            let mut lines = Vec::new();
            let mut more = false;
            for entry in walker.filter_map(Result::ok) {
                if entry.depth() == 0 {
                    continue;
                }
                let name = entry.path().strip_prefix(&start).unwrap_or(entry.path()).display().to_string();
                if name == ".git" || name.starts_with(".git/") {
                    continue;
                }
                if lines.len() == MAX_LIST_ENTRIES {
                    more = true;
                    break;
                }
                let kind = entry.file_type();
                lines.push(match kind {
                    Some(t) if t.is_dir() => format!("{name}/"),
                    Some(t) if t.is_symlink() => format!("{name} (symlink)"),
                    _ => name,
                });
            }
            if lines.is_empty() {
                return Ok(format!("{shown} is empty"));
            }
            if more {
                lines.push(format!("[… more than {MAX_LIST_ENTRIES} entries; list a subdirectory or lower depth]"));
            }
            Ok(lines.join("\n"))
        })
        .await
    }
}

// ---- fs_search ----

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SearchArgs {
    /// Regular expression (Rust regex syntax) to look for in file contents.
    pattern: String,
    /// Directory relative to the workspace to search (default: the workspace).
    path: Option<String>,
    /// Match case-insensitively (default false).
    ignore_case: Option<bool>,
}

struct FsSearch(Arc<Workspace>);

#[async_trait]
impl Tool for FsSearch {
    fn name(&self) -> &str {
        "fs_search"
    }
    fn description(&self) -> &str {
        "Search file contents in the workspace with a regular expression, like ripgrep: answers `path:line: text` for each match, skipping binary and ignored files."
    }
    fn parameters(&self) -> Value {
        schema::<SearchArgs>()
    }
    fn risk(&self) -> Risk {
        Risk::Read
    }
    fn summary(&self, arguments: &Value) -> String {
        format!("search for /{}/", arguments["pattern"].as_str().unwrap_or("?"))
    }
    async fn call(&self, arguments: Value, ctx: &ToolContext) -> Result<String, ToolError> {
        let args: SearchArgs = parse_args(arguments)?;
        let ws = self.0.clone();
        let cancel = ctx.cancel.clone();
        blocking(move || {
            let matcher = grep_regex::RegexMatcherBuilder::new()
                .case_insensitive(args.ignore_case.unwrap_or(false))
                .build(&args.pattern)
                .map_err(|e| ToolError::InvalidArguments(format!("bad pattern: {e}")))?;
            let (start, _) = ws.resolve_dir(args.path.as_deref().unwrap_or(""))?;
            let root = ws.resolve(args.path.as_deref().unwrap_or(""))?.root;
            let mut searcher = grep_searcher::SearcherBuilder::new()
                .binary_detection(grep_searcher::BinaryDetection::quit(0))
                .line_number(true)
                .build();
            let mut found: Vec<String> = Vec::new();
            let skip = ws.clone();
            let walker = ignore::WalkBuilder::new(&start)
                .filter_entry(move |entry| !skip.is_private(entry.path()))
                .follow_links(false)
                .hidden(false)
                .require_git(false)
                .build();
            for entry in walker.filter_map(Result::ok) {
                if cancel.is_cancelled() || found.len() >= MAX_SEARCH_MATCHES {
                    break;
                }
                if !entry.file_type().is_some_and(|t| t.is_file())
                    || entry.path().components().any(|c| c.as_os_str() == ".git")
                {
                    continue;
                }
                let Ok(relative) = entry.path().strip_prefix(&root.path) else { continue };
                // Re-open beneath the root: the walk's path string is not trusted.
                let Ok(file) = root.dir.open(relative) else { continue };
                let file = file.into_std();
                if ws.check_opened(&file, "").is_err() {
                    continue;
                }
                let shown = relative.display().to_string();
                let _ = searcher.search_file(
                    &matcher,
                    &file,
                    grep_searcher::sinks::Lossy(|line_number, line| {
                        found.push(format!("{shown}:{line_number}: {}", super::clip(line.trim_end(), 300)));
                        Ok(found.len() < MAX_SEARCH_MATCHES)
                    }),
                );
            }
            if found.is_empty() {
                return Ok(format!("no match for /{}/", args.pattern));
            }
            if found.len() >= MAX_SEARCH_MATCHES {
                found.push(format!("[… stopped at {MAX_SEARCH_MATCHES} matches; narrow the pattern or path]"));
            }
            Ok(found.join("\n"))
        })
        .await
    }
}

// ---- fs_delete ----

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct DeleteArgs {
    /// File or directory relative to the workspace.
    path: String,
    /// Delete a directory and everything in it (default false: only files and empty directories).
    recursive: Option<bool>,
}

struct FsDelete(Arc<Workspace>);

#[async_trait]
impl Tool for FsDelete {
    fn name(&self) -> &str {
        "fs_delete"
    }
    fn description(&self) -> &str {
        "Delete a file or an empty directory in the workspace (with recursive=true, a directory and its contents)."
    }
    fn parameters(&self) -> Value {
        schema::<DeleteArgs>()
    }
    fn risk(&self) -> Risk {
        Risk::Destructive
    }
    fn summary(&self, arguments: &Value) -> String {
        let recursive = if arguments["recursive"].as_bool() == Some(true) { " and everything in it" } else { "" };
        format!("delete {}{recursive}", arguments["path"].as_str().unwrap_or("?"))
    }
    async fn call(&self, arguments: Value, _ctx: &ToolContext) -> Result<String, ToolError> {
        let args: DeleteArgs = parse_args(arguments)?;
        let ws = self.0.clone();
        blocking(move || {
            let target = ws.resolve(&args.path)?;
            if target.relative.as_os_str().is_empty() {
                return Err(WorkspaceError::Refused(target.shown, "the workspace itself cannot be deleted").into());
            }
            let io = |e| WorkspaceError::io(&target.shown, e);
            // Removed from the directory as opened and checked, whatever links led there.
            let parent = target.relative.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            let dir = target.root.dir.open_dir(parent).map_err(io)?;
            ws.check_opened(&dir, &target.shown)?;
            let Some(rel) = target.relative.file_name().map(Path::new) else {
                return Err(WorkspaceError::Refused(target.shown, "it names no file").into());
            };
            let metadata = dir.symlink_metadata(rel).map_err(io)?;
            if metadata.is_dir() {
                let inner = dir.open_dir(rel).map_err(io)?;
                let holds_private = real_path(&inner).is_ok_and(|real| ws.holds_private(&real));
                if holds_private || ws.holds_private(&target.absolute()) {
                    return Err(WorkspaceError::Refused(target.shown, "it holds Pryx's own data").into());
                }
                if args.recursive.unwrap_or(false) {
                    dir.remove_dir_all(rel)
                } else {
                    dir.remove_dir(rel)
                }
            } else {
                dir.remove_file(rel)
            }
            .map_err(|e| WorkspaceError::io(&target.shown, e))?;
            Ok(format!("deleted {}", target.shown))
        })
        .await
    }
}
