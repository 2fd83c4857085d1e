//! The built-in tools against hostile input: paths that try to leave the workspace, and
//! shell commands that try to write outside it, read secrets, or outlive their timeout.
//! These call the tools directly (the shell in the real sandbox, set up by this process).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use pryx::sandbox::workspace::Workspace;
use pryx::tools::shell::ShellConfig;
use pryx::tools::{parse_arguments, ToolContext, ToolError, ToolRegistry};
use serde_json::json;

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    outside: PathBuf,
    tools: ToolRegistry,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ws");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), "TOP-SECRET").unwrap();
    let workspace = Arc::new(Workspace::open(&root, &[]).unwrap());
    let shell = ShellConfig { default_timeout: Duration::from_secs(20), ..ShellConfig::default() };
    let root = workspace.root().to_owned();
    Fixture {
        _dir: dir,
        root,
        outside: outside.canonicalize().unwrap(),
        tools: ToolRegistry::with_builtins(workspace, shell),
    }
}

impl Fixture {
    async fn call(&self, name: &str, arguments: serde_json::Value) -> Result<String, ToolError> {
        self.tools.call(name, parse_arguments(&arguments.to_string())?, &ToolContext::default()).await
    }
}

#[tokio::test]
async fn file_tools_work_inside_the_workspace() {
    let f = fixture();
    let wrote = f.call("fs_write", json!({"path": "notes/a.txt", "content": "one\ntwo\nthree\n"})).await.unwrap();
    assert!(wrote.contains("created"), "{wrote}");
    assert!(
        f.call("fs_write", json!({"path": "notes/a.txt", "content": "x"})).await.is_err(),
        "create refuses to clobber"
    );
    f.call("fs_write", json!({"path": "notes/a.txt", "content": "four\n", "mode": "append"})).await.unwrap();
    assert_eq!(f.call("fs_read", json!({"path": "notes/a.txt"})).await.unwrap(), "one\ntwo\nthree\nfour\n");
    assert_eq!(
        f.call("fs_read", json!({"path": "notes/a.txt", "start_line": 2, "end_line": 3})).await.unwrap(),
        "two\nthree\n"
    );

    std::fs::write(f.root.join(".gitignore"), "build/\n").unwrap();
    std::fs::create_dir_all(f.root.join("build")).unwrap();
    std::fs::write(f.root.join("build/out.o"), "binary").unwrap();
    let listing = f.call("fs_list", json!({})).await.unwrap();
    assert!(listing.contains("notes/") && listing.contains("notes/a.txt"), "{listing}");
    assert!(!listing.contains("build"), ".gitignore is respected: {listing}");
    let all = f.call("fs_list", json!({"include_ignored": true})).await.unwrap();
    assert!(all.contains("build/"), "{all}");

    let found = f.call("fs_search", json!({"pattern": "t(wo|hree)"})).await.unwrap();
    assert_eq!(found, "notes/a.txt:2: two\nnotes/a.txt:3: three");
    assert!(f.call("fs_search", json!({"pattern": "("})).await.is_err(), "a bad regex is explained");

    f.call("fs_write", json!({"path": "notes/a.txt", "content": "new", "mode": "overwrite"})).await.unwrap();
    assert_eq!(std::fs::read_to_string(f.root.join("notes/a.txt")).unwrap(), "new");
    assert!(f.call("fs_delete", json!({"path": "notes"})).await.is_err(), "a non-empty directory needs recursive");
    f.call("fs_delete", json!({"path": "notes", "recursive": true})).await.unwrap();
    assert!(!f.root.join("notes").exists());
    assert!(f.call("fs_delete", json!({"path": "."})).await.is_err(), "the workspace itself stays");
}

#[tokio::test]
async fn hostile_paths_are_all_refused() {
    let f = fixture();
    std::os::unix::fs::symlink("/", f.root.join("root_link")).unwrap();
    std::os::unix::fs::symlink(&f.outside, f.root.join("outside_link")).unwrap();
    std::os::unix::fs::symlink(f.outside.join("secret.txt"), f.root.join("secret_link")).unwrap();
    std::fs::hard_link(f.outside.join("secret.txt"), f.root.join("hard_link")).unwrap();
    let long_name = "n".repeat(10_000);
    let hostile: Vec<String> = vec![
        "../outside/secret.txt".into(),
        "notes/../../outside/secret.txt".into(),
        "/etc/passwd".into(),
        f.outside.join("secret.txt").display().to_string(),
        "root_link/etc/passwd".into(),
        "outside_link/secret.txt".into(),
        "secret_link".into(),
        "hard_link".into(),
        "\u{FF0E}\u{FF0E}/outside/secret.txt".into(),
        "..\u{2215}outside\u{2215}secret.txt".into(),
        "secret\u{202E}txt.exe".into(),
        "a\0b".into(),
        long_name.clone(),
        format!("{long_name}/x"),
    ];
    for path in &hostile {
        // Deleting a link removes only its own name, which is inside: that one is allowed
        // (and the target's survival is checked below).
        let link_name = ["secret_link", "hard_link"].contains(&path.as_str());
        let delete = (!link_name).then(|| ("fs_delete", json!({"path": path})));
        for (tool, arguments) in [
            Some(("fs_read", json!({"path": path}))),
            Some(("fs_write", json!({"path": path, "content": "pwned", "mode": "overwrite"}))),
            delete,
            Some(("fs_list", json!({"path": path}))),
            Some(("fs_search", json!({"pattern": "TOP", "path": path}))),
        ]
        .into_iter()
        .flatten()
        {
            let result = f.call(tool, arguments).await;
            let shown: String = path.chars().take(40).collect();
            assert!(result.is_err(), "{tool} {shown:?} must be refused, got {result:?}");
            assert!(!result.unwrap_err().to_string().contains("TOP-SECRET"));
        }
    }
    assert_eq!(std::fs::read_to_string(f.outside.join("secret.txt")).unwrap(), "TOP-SECRET", "nothing outside changed");
    assert!(Path::new("/etc/passwd").exists());
    let listing = f.call("fs_list", json!({})).await.unwrap();
    assert!(listing.contains("root_link (symlink)"), "links are shown, not followed: {listing}");
    f.call("fs_delete", json!({"path": "secret_link"})).await.unwrap();
    f.call("fs_delete", json!({"path": "hard_link"})).await.unwrap();
    assert_eq!(std::fs::read_to_string(f.outside.join("secret.txt")).unwrap(), "TOP-SECRET", "only the links went");
    let found = f.call("fs_search", json!({"pattern": "TOP-SECRET"})).await.unwrap();
    assert!(found.starts_with("no match"), "search never reads through links: {found}");
}

#[tokio::test]
async fn a_symlink_swapped_during_calls_never_leads_outside() {
    let f = fixture();
    std::fs::create_dir_all(f.root.join("inside")).unwrap();
    std::fs::write(f.root.join("inside/secret.txt"), "harmless").unwrap();
    let link = f.root.join("swap");
    // Relative target: an absolute one is never followed beneath a directory handle at all.
    std::os::unix::fs::symlink("inside", &link).unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swapper = {
        let (stop, link, inside, outside) = (stop.clone(), link.clone(), PathBuf::from("inside"), f.outside.clone());
        std::thread::spawn(move || {
            let mut flip = false;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let target = if flip { &inside } else { &outside };
                let tmp = link.with_extension("tmp");
                let _ = std::fs::remove_file(&tmp);
                let _ = std::os::unix::fs::symlink(target, &tmp);
                let _ = std::fs::rename(&tmp, &link);
                flip = !flip;
            }
        })
    };
    let mut harmless = 0;
    for _ in 0..300 {
        match f.call("fs_read", json!({"path": "swap/secret.txt"})).await {
            Ok(text) => {
                // Either content is the inside file's (our own writes change it).
                assert!(text == "harmless" || text == "pwned", "a read through the swapped link escaped: {text}");
                harmless += 1;
            }
            Err(e) => assert!(!e.to_string().contains("TOP-SECRET")),
        }
        let _ = f.call("fs_write", json!({"path": "swap/secret.txt", "content": "pwned", "mode": "overwrite"})).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    swapper.join().unwrap();
    assert_eq!(std::fs::read_to_string(f.outside.join("secret.txt")).unwrap(), "TOP-SECRET");
    assert!(harmless > 0, "the link was usable while it pointed inside");
}

/// A workspace may hold Pryx's own data dir (a workspace of `~` holds
/// `~/.local/share/pryx`): no file tool reaches it, by name or through a link, even one
/// swapped between calls, and no walk shows it.
#[tokio::test]
async fn a_workspace_holding_pryxs_data_dir_keeps_the_tools_out_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("home");
    let data = root.join(".local/share/pryx");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("token"), "TOKEN-0123456789").unwrap();
    std::fs::write(root.join("notes.txt"), "mine").unwrap();
    let mut workspace = Workspace::open(&root, &[]).unwrap();
    workspace.keep_out(&pryx::sandbox::PrivatePaths::of_pryx(&data, None, None));
    let root = workspace.root().to_owned();
    let tools = ToolRegistry::with_builtins(Arc::new(workspace), ShellConfig::default());
    let call = |name: &'static str, arguments: serde_json::Value| {
        let tools = tools.clone();
        async move { tools.call(name, parse_arguments(&arguments.to_string()).unwrap(), &ToolContext::default()).await }
    };
    std::os::unix::fs::symlink(".local/share/pryx", root.join("shortcut")).unwrap();
    std::os::unix::fs::symlink(".local/share/pryx/token", root.join("token-link")).unwrap();
    for path in [".local/share/pryx/token", "shortcut/token", "token-link", "./.local/share/pryx/../pryx/token"] {
        let read = call("fs_read", json!({"path": path})).await;
        assert!(!format!("{read:?}").contains("TOKEN-0123456789"), "{path}: {read:?}");
        let appended = call("fs_write", json!({"path": path, "content": "x", "mode": "append"})).await;
        assert!(appended.is_err(), "{path}: {appended:?}");
        let deleted = call("fs_delete", json!({"path": path})).await;
        assert!(deleted.is_err() || path == "token-link", "{path}: {deleted:?}");
    }
    assert!(call("fs_write", json!({"path": "shortcut/new", "content": "x"})).await.is_err());
    assert!(call("fs_delete", json!({"path": ".local", "recursive": true})).await.is_err(), "it holds the data dir");
    assert!(call("fs_list", json!({"path": "shortcut"})).await.is_err());
    let listed = call("fs_list", json!({"path": ".", "depth": 5})).await.unwrap();
    assert!(listed.contains("notes.txt") && !listed.contains("share/pryx/"), "{listed}");
    let found = call("fs_search", json!({"pattern": "TOKEN"})).await.unwrap();
    assert!(!found.contains("TOKEN-0123"), "{found}");
    assert_eq!(std::fs::read_to_string(data.join("token")).unwrap(), "TOKEN-0123456789");
    assert_eq!(call("fs_read", json!({"path": "notes.txt"})).await.unwrap(), "mine", "the rest of it stays usable");
}

/// PIDs of live processes whose command line contains `marker`.
pub fn processes_with(marker: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let state = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let zombie = state.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z'));
        if !zombie && String::from_utf8_lossy(&cmdline).replace('\0', " ").contains(marker) {
            found.push(pid);
        }
    }
    found
}

#[tokio::test]
async fn a_command_and_its_grandchildren_die_at_timeout() {
    let f = fixture();
    let marker = "4711.0815"; // an unusual sleep length only this test uses
    let command = format!("sleep {marker} & (sleep {marker} &) ; setsid sleep {marker} & echo started; sleep {marker}");
    let started = std::time::Instant::now();
    let result = f.call("shell_execute", json!({"command": command, "timeout_secs": 1})).await;
    let message = result.unwrap_err().to_string();
    assert!(message.contains("timed out after 1s") && message.contains("started"), "{message}");
    assert!(started.elapsed() < Duration::from_secs(10));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(processes_with(marker), Vec::<u32>::new(), "every process the command started is gone");
}

#[tokio::test]
async fn cancelling_the_turn_kills_the_command() {
    let f = fixture();
    let marker = "4712.0815";
    let cancel = tokio_util::sync::CancellationToken::new();
    let ctx = ToolContext { cancel: cancel.clone(), ..ToolContext::default() };
    let arguments =
        parse_arguments(&json!({"command": format!("sleep {marker} & sleep {marker}")}).to_string()).unwrap();
    let call = f.tools.call("shell_execute", arguments, &ctx);
    let canceller = async {
        crate::support::eventually("the command to start", || async { processes_with(marker).len() >= 2 }).await;
        cancel.cancel();
    };
    let (result, ()) = tokio::join!(call, canceller);
    assert!(result.unwrap_err().to_string().contains("cancelled"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(processes_with(marker), Vec::<u32>::new());
}

#[tokio::test]
async fn commands_write_only_inside_the_workspace_and_temp() {
    let f = fixture();
    // Outside both the workspace and the temp dir (which commands may write to).
    let outside = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let outside_file = outside.path().join("written-by-command");
    let command = format!(
        "echo in > inside.txt && echo tmp > /tmp/pryx-landlock-$$.txt && rm /tmp/pryx-landlock-$$.txt && echo out > {}",
        outside_file.display()
    );
    let output = f.call("shell_execute", json!({"command": command})).await.unwrap();
    assert!(output.starts_with("exit code: 1") || output.starts_with("exit code: 2"), "{output}");
    assert!(output.contains("Permission denied"), "{output}");
    assert_eq!(std::fs::read_to_string(f.root.join("inside.txt")).unwrap(), "in\n");
    assert!(!outside_file.exists(), "Landlock blocked the write outside the workspace");
    let home = f.call("shell_execute", json!({"command": "touch ~/x && pwd && echo $HOME"})).await.unwrap();
    assert!(home.contains(&f.root.display().to_string()), "HOME and cwd are the workspace: {home}");
}

#[tokio::test]
async fn commands_see_no_secrets_from_the_environment_and_output_is_capped() {
    // The test process's own environment stands in for Pryx's: only allowlisted names pass.
    let f = fixture();
    let output = f.call("shell_execute", json!({"command": "env"})).await.unwrap();
    for line in output.lines().skip(2) {
        let name = line.split('=').next().unwrap_or("");
        assert!(
            [
                "PATH", "LANG", "LC_ALL", "LC_CTYPE", "TERM", "TZ", "USER", "LOGNAME", "HOME", "PWD", "SHLVL", "_",
                "OLDPWD", ""
            ]
            .contains(&name)
                || line.starts_with("---"),
            "unexpected variable visible to commands: {line}"
        );
    }
    let big = f.call("shell_execute", json!({"command": "seq 1 200000"})).await.unwrap();
    assert!(big.len() < 70 * 1024, "output is capped: {} bytes", big.len());
    assert!(big.contains("\n1\n2\n3\n") && big.contains("200000"), "head and tail are kept");
    assert!(big.contains("bytes cut of 1288895"), "and the cut is stated");
}
