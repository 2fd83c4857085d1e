//! Dangerous calls wait for a human: allow, deny, timeout, concurrency, restart, the CLI,
//! and the audit trail, through the real binary.

use std::time::Duration;

use pryx::client::PryxApiClient;
use pryx_api::{error_code, ApprovalDecision, ApprovalStatus, Rule, TurnEvent, TurnStatus};

use crate::support::{base_command, follow, MockLlm, Options, Pryx, Reply, PATIENCE};

async fn open_store(pryx: &Pryx) -> pryx::store::Store {
    pryx::store::Store::open(&pryx.data_dir().join("pryx.db")).await.unwrap()
}

use crate::support::next_approval as next_request;

fn delete_call(path: &str) -> Reply {
    Reply::tool_call("call_del", "fs_delete", &format!("{{\"path\": \"{path}\"}}"))
}

#[tokio::test]
async fn a_denied_delete_leaves_the_file_and_an_allowed_one_removes_it() {
    let llm = MockLlm::start().await;
    llm.script([delete_call("keep.txt"), Reply::text(&["I did not delete it."])]);
    let pryx = Pryx::start(Options::with_llm(&llm)).await;
    let workspace = pryx.data_dir().join("workspace");
    std::fs::create_dir_all(&workspace).unwrap();
    std::fs::write(workspace.join("keep.txt"), "precious").unwrap();
    let client = pryx.client().await;
    let mut approvals = client.approvals_subscribe().await.unwrap();

    let session = client.session_create(None).await.unwrap();
    let turn = client.message_send(session.id.clone(), "delete keep.txt".into()).await.unwrap();
    let request = next_request(&mut approvals).await;
    assert_eq!(
        (request.tool.as_str(), request.summary.as_str(), request.risk.as_str()),
        ("fs_delete", "delete keep.txt", "destructive")
    );
    assert_eq!(request.turn_id, turn.turn_id);
    assert!(workspace.join("keep.txt").exists(), "nothing happens before the answer");
    let pending = client.approval_list(None).await.unwrap();
    assert_eq!(pending.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(), [request.id.as_str()]);

    let denied = client
        .approval_answer(request.id.clone(), ApprovalDecision::Deny, Some("keep it, please".into()), Some("ui".into()))
        .await
        .unwrap();
    assert_eq!(denied.status, ApprovalStatus::Denied);
    let log = follow(&client, &turn.turn_id).await;
    assert!(matches!(log.last(), TurnEvent::Done { status: TurnStatus::Completed, .. }));
    let kinds: Vec<&str> = log.events.iter().map(|e| e.event.kind()).collect();
    assert!(
        kinds.starts_with(&["usage", "tool_call", "approval_requested", "approval_settled", "tool_result"]),
        "{kinds:?}"
    );
    let TurnEvent::ToolResult { output, is_error: true, .. } = &log.events[4].event else {
        panic!("{:?}", log.events[4])
    };
    assert!(output.contains("the user denied it") && output.contains("keep it, please"), "{output}");
    assert_eq!(std::fs::read_to_string(workspace.join("keep.txt")).unwrap(), "precious", "the file survived the deny");
    let second_request = &llm.requests()[1];
    let tool_message = second_request["messages"].as_array().unwrap().last().unwrap().clone();
    assert!(tool_message["content"].as_str().unwrap().contains("denied"), "the model is told");

    // A late answer is told it was settled, and changes nothing.
    let late = client.approval_answer(request.id.clone(), ApprovalDecision::AllowOnce, None, None).await.unwrap_err();
    assert!(
        matches!(&late, jsonrpsee::core::ClientError::Call(e) if e.code() == error_code::CONFLICT && e.message().contains("denied")),
        "{late}"
    );

    // Now allow it.
    llm.script([delete_call("keep.txt"), Reply::text(&["Deleted."])]);
    let turn = client.message_send(session.id.clone(), "really delete it".into()).await.unwrap();
    let request = next_request(&mut approvals).await;
    client.approval_answer(request.id.clone(), ApprovalDecision::AllowOnce, None, Some("ui".into())).await.unwrap();
    let log = follow(&client, &turn.turn_id).await;
    assert_eq!(log.text(), "Deleted.");
    assert!(!workspace.join("keep.txt").exists(), "the file is gone after the allow");

    let audit = pryx::approvals::audit_trail(&open_store(&pryx).await).await.unwrap();
    let rows: Vec<(String, String)> = audit.iter().map(|a| (a.actor.clone(), a.outcome.clone())).collect();
    let expected = [("ui", "denied"), ("api", "late"), ("ui", "allowed")].map(|(a, o)| (a.to_owned(), o.to_owned()));
    assert_eq!(rows, expected);
}

#[tokio::test]
async fn allow_for_session_covers_later_calls_of_that_tool_in_that_session_only() {
    let llm = MockLlm::start().await;
    let write =
        |name: &str| Reply::tool_call("w", "fs_write", &format!("{{\"path\": \"{name}\", \"content\": \"x\"}}"));
    llm.script([
        write("a.txt"),
        Reply::text(&["ok"]),
        write("b.txt"),
        Reply::text(&["ok"]),
        write("c.txt"),
        Reply::text(&["ok"]),
    ]);
    let pryx = Pryx::start(Options::with_llm(&llm)).await;
    let client = pryx.client().await;
    let mut approvals = client.approvals_subscribe().await.unwrap();
    let session = client.session_create(None).await.unwrap();

    let first = client.message_send(session.id.clone(), "write a".into()).await.unwrap();
    let request = next_request(&mut approvals).await;
    client.approval_answer(request.id, ApprovalDecision::AllowForSession, None, None).await.unwrap();
    follow(&client, &first.turn_id).await;

    let second = client.message_send(session.id.clone(), "write b".into()).await.unwrap();
    let log = follow(&client, &second.turn_id).await;
    assert!(!log.events.iter().any(|e| e.event.kind() == "approval_requested"), "no second question in this session");

    let other = client.session_create(None).await.unwrap();
    let third = client.message_send(other.id.clone(), "write c".into()).await.unwrap();
    let request = next_request(&mut approvals).await;
    assert_eq!(request.session_id, other.id, "another session asks again");
    client.approval_answer(request.id, ApprovalDecision::Deny, None, None).await.unwrap();
    follow(&client, &third.turn_id).await;
    let workspace = pryx.data_dir().join("workspace");
    assert!(workspace.join("a.txt").exists() && workspace.join("b.txt").exists() && !workspace.join("c.txt").exists());
}

#[tokio::test]
async fn no_answer_in_time_is_a_deny() {
    let llm = MockLlm::start().await;
    llm.script([delete_call("keep.txt"), Reply::text(&["ok"])]);
    let pryx = Pryx::start(Options::with_llm(&llm).config("[policy]\napproval_timeout_secs = 1")).await;
    let workspace = pryx.data_dir().join("workspace");
    std::fs::write(workspace.join("keep.txt"), "precious").unwrap();
    let client = pryx.client().await;
    let session = client.session_create(None).await.unwrap();
    let turn = client.message_send(session.id, "delete it".into()).await.unwrap();
    let log = follow(&client, &turn.turn_id).await;
    let settled = log.events.iter().find_map(|e| match &e.event {
        TurnEvent::ApprovalSettled { approval } => Some(approval.clone()),
        _ => None,
    });
    assert_eq!(settled.map(|a| a.status), Some(ApprovalStatus::TimedOut), "{:?}", log.events);
    assert!(workspace.join("keep.txt").exists());
    let audit = pryx::approvals::audit_trail(&open_store(&pryx).await).await.unwrap();
    assert_eq!((audit[0].actor.as_str(), audit[0].outcome.as_str()), ("timeout", "timed_out"));
}

#[tokio::test]
async fn concurrent_approvals_are_answered_independently_and_first_answer_wins() {
    let llm = MockLlm::start().await;
    llm.script([
        Reply::ToolCalls(vec![
            ("c1".into(), "fs_write".into(), r#"{"path": "one.txt", "content": "1"}"#.into()),
            ("c2".into(), "fs_write".into(), r#"{"path": "two.txt", "content": "2"}"#.into()),
        ]),
        Reply::text(&["done"]),
    ]);
    let pryx = Pryx::start(Options::with_llm(&llm)).await;
    let client = pryx.client().await;
    let mut approvals = client.approvals_subscribe().await.unwrap();
    let session = client.session_create(None).await.unwrap();
    let turn = client.message_send(session.id, "write two files".into()).await.unwrap();
    let a = next_request(&mut approvals).await;
    let b = next_request(&mut approvals).await;
    assert_ne!(a.id, b.id);
    let (allow_a, deny_b) = (a.clone(), b.clone());
    // Two surfaces race on the same request: exactly one wins.
    let race = client.approval_answer(allow_a.id.clone(), ApprovalDecision::AllowOnce, None, Some("ui".into()));
    let other = pryx.client().await;
    let race2 = other.approval_answer(allow_a.id.clone(), ApprovalDecision::Deny, None, Some("cli".into()));
    let (r1, r2) = tokio::join!(race, race2);
    assert!(r1.is_ok() != r2.is_ok(), "exactly one answer wins: {r1:?} / {r2:?}");
    client.approval_answer(deny_b.id.clone(), ApprovalDecision::Deny, None, None).await.unwrap();
    follow(&client, &turn.turn_id).await;
    let workspace = pryx.data_dir().join("workspace");
    let a_written = workspace.join(if a.call_id == "c1" { "one.txt" } else { "two.txt" }).exists();
    let b_written = workspace.join(if b.call_id == "c1" { "one.txt" } else { "two.txt" }).exists();
    assert_eq!(a_written, r1.is_ok(), "the winning answer decided");
    assert!(!b_written);
}

#[tokio::test]
async fn a_pending_approval_expires_at_restart_and_is_never_allowed() {
    let llm = MockLlm::start().await;
    llm.script([delete_call("keep.txt")]);
    let options = Options::with_llm(&llm);
    let pryx = Pryx::start(options.clone()).await;
    let workspace = pryx.data_dir().join("workspace");
    std::fs::write(workspace.join("keep.txt"), "precious").unwrap();
    let client = pryx.client().await;
    let mut approvals = client.approvals_subscribe().await.unwrap();
    let session = client.session_create(None).await.unwrap();
    client.message_send(session.id, "delete it".into()).await.unwrap();
    let request = next_request(&mut approvals).await;
    let home = pryx.home.clone();
    pryx.kill9().await;

    let pryx = Pryx::start_in(&home, options).await;
    let client = pryx.client().await;
    assert!(client.approval_list(None).await.unwrap().is_empty(), "nothing is pending after a restart");
    let all = client.approval_list(Some(true)).await.unwrap();
    assert_eq!((all[0].id.as_str(), all[0].status), (request.id.as_str(), ApprovalStatus::Expired));
    let late = client.approval_answer(request.id.clone(), ApprovalDecision::AllowOnce, None, None).await;
    assert!(late.is_err(), "an expired request cannot be allowed later");
    assert!(workspace.join("keep.txt").exists());
}

#[tokio::test]
async fn the_cli_lists_and_answers_approvals() {
    let llm = MockLlm::start().await;
    llm.script([delete_call("keep.txt"), Reply::text(&["ok"])]);
    let pryx = Pryx::start(Options::with_llm(&llm)).await;
    std::fs::write(pryx.data_dir().join("workspace/keep.txt"), "x").unwrap();
    let client = pryx.client().await;
    let mut approvals = client.approvals_subscribe().await.unwrap();
    let session = client.session_create(None).await.unwrap();
    let turn = client.message_send(session.id, "delete".into()).await.unwrap();
    let request = next_request(&mut approvals).await;

    let listed = base_command(&pryx.home).args(["approvals"]).output().await.unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(listed.contains(&request.id) && listed.contains("delete keep.txt"), "{listed}");

    let answered =
        base_command(&pryx.home).args(["approvals", "deny", &request.id, "--note", "no"]).output().await.unwrap();
    assert!(answered.status.success(), "{}", String::from_utf8_lossy(&answered.stderr));
    let again = base_command(&pryx.home).args(["approvals", "allow", &request.id]).output().await.unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already settled"));
    follow(&client, &turn.turn_id).await;
    let audit = pryx::approvals::audit_trail(&open_store(&pryx).await).await.unwrap();
    assert_eq!((audit[0].actor.as_str(), audit[0].outcome.as_str()), ("cli", "denied"));
}

#[tokio::test]
async fn shell_commands_run_in_turns_without_secrets_and_die_with_the_turn() {
    let llm = MockLlm::start().await;
    llm.script([
        Reply::tool_call("s1", "shell_execute", r#"{"command": "env; echo $PRYX_LLM_API_KEY"}"#),
        Reply::text(&["ok"]),
    ]);
    let options =
        Options::with_llm(&llm).config("[policy]\nshell_allow = [\"env\"]\n[policy.tools]\nshell_execute = \"ask\"");
    let pryx = Pryx::start(options).await;
    let client = pryx.client().await;
    let mut approvals = client.approvals_subscribe().await.unwrap();
    let session = client.session_create(None).await.unwrap();
    let turn = client.message_send(session.id.clone(), "show env".into()).await.unwrap();
    let request = next_request(&mut approvals).await;
    assert_eq!(request.summary, "run `env; echo $PRYX_LLM_API_KEY`", "a compound command is not covered by the prefix");
    client.approval_answer(request.id, ApprovalDecision::AllowOnce, None, None).await.unwrap();
    let log = follow(&client, &turn.turn_id).await;
    let output = log.events.iter().find_map(|e| match &e.event {
        TurnEvent::ToolResult { output, .. } => Some(output.clone()),
        _ => None,
    });
    let output = output.unwrap();
    assert!(output.starts_with("exit code: 0") && output.contains("PATH="), "{output}");
    assert!(!output.contains("test-key-123") && !output.contains("PRYX_FAULT_INJECTION"), "secrets stay out: {output}");

    // Cancel a turn whose command would run for an hour: the command dies with it.
    let marker = "4713.0815";
    llm.script([
        Reply::tool_call("s2", "shell_execute", &format!(r#"{{"command": "sleep {marker}"}}"#)),
        Reply::text(&["ok"]),
    ]);
    let turn = client.message_send(session.id, "sleep".into()).await.unwrap();
    let request = next_request(&mut approvals).await;
    client.approval_answer(request.id, ApprovalDecision::AllowOnce, None, None).await.unwrap();
    crate::support::eventually("the command to start", || async { !crate::tools::processes_with(marker).is_empty() })
        .await;
    assert!(client.turn_cancel(turn.turn_id.clone()).await.unwrap());
    crate::support::eventually("the command to die", || async { crate::tools::processes_with(marker).is_empty() })
        .await;
    let _ = tokio::time::timeout(Duration::from_secs(5), follow(&client, &turn.turn_id)).await;
}

#[tokio::test]
async fn system_info_reports_the_workspace_and_sandbox() {
    let llm = MockLlm::start().await;
    let pryx = Pryx::start(Options::with_llm(&llm)).await;
    let info = pryx.client().await.system_info().await.unwrap();
    let workspace = pryx.data_dir().join("workspace").canonicalize().unwrap();
    assert_eq!(info.sandbox.workspace, workspace.display().to_string());
    assert!(["full", "partial", "none"].contains(&info.sandbox.landlock.as_str()));
    assert!(!info.sandbox.summary.is_empty());
    let doctor = base_command(&pryx.home).arg("doctor").output().await.unwrap();
    let doctor = String::from_utf8_lossy(&doctor.stdout).into_owned();
    assert!(doctor.contains("sandbox:") && doctor.contains(&info.sandbox.summary), "{doctor}");
    assert!(doctor.contains("server:       running at"), "{doctor}");
}

#[tokio::test]
async fn no_command_outlives_pryx_whether_stopped_or_killed() {
    for (marker, kill) in [("4714.0815", false), ("4715.0815", true)] {
        let llm = MockLlm::start().await;
        let command = format!(r#"{{"command": "sleep {marker} & setsid sleep {marker} & sleep {marker}"}}"#);
        llm.script([Reply::tool_call("s", "shell_execute", &command)]);
        let pryx = Pryx::start(Options::with_llm(&llm).config("[policy.tools]\nshell_execute = \"allow\"")).await;
        let client = pryx.client().await;
        let session = client.session_create(None).await.unwrap();
        client.message_send(session.id, "sleep".into()).await.unwrap();
        crate::support::eventually("the commands to start", || async {
            crate::tools::processes_with(marker).len() >= 3
        })
        .await;
        if kill {
            pryx.kill9().await;
        } else {
            assert_eq!(pryx.terminate().await, 0);
        }
        crate::support::eventually("every command to be gone", || async {
            crate::tools::processes_with(marker).is_empty()
        })
        .await;
    }
}

/// Collect activity updates until one satisfies `done`.
async fn activity_until(
    activity: &mut jsonrpsee::core::client::Subscription<pryx_api::Activity>,
    done: impl Fn(&pryx_api::Activity) -> bool,
) -> pryx_api::Activity {
    loop {
        let now = tokio::time::timeout(PATIENCE, activity.next()).await.unwrap().unwrap().unwrap();
        if done(&now) {
            return now;
        }
    }
}

#[tokio::test]
async fn activity_says_thinking_waiting_error_and_paused() {
    use pryx_api::AgentState;
    let llm = MockLlm::start().await;
    let pryx = Pryx::start(Options::with_llm(&llm)).await;
    let workspace = pryx.data_dir().join("workspace");
    std::fs::create_dir_all(&workspace).unwrap();
    std::fs::write(workspace.join("a.txt"), "x").unwrap();
    let client = pryx.client().await;
    let mut activity = client.activity_subscribe().await.unwrap();
    let first = activity_until(&mut activity, |_| true).await;
    assert_eq!((first.state, first.running_turns, first.pending_approvals), (AgentState::Idle, 0, 0));

    let session = client.session_create(None).await.unwrap();
    llm.script([delete_call("a.txt"), Reply::text(&["Done."])]);
    let turn = client.message_send(session.id.clone(), "delete a.txt".into()).await.unwrap();
    let waiting = activity_until(&mut activity, |a| a.state == AgentState::WaitingForApproval).await;
    assert_eq!((waiting.running_turns, waiting.pending_approvals), (1, 1));
    let request = client.approval_list(None).await.unwrap().remove(0);
    client.approval_answer(request.id, ApprovalDecision::AllowOnce, None, None).await.unwrap();
    follow(&client, &turn.turn_id).await;
    activity_until(&mut activity, |a| a.state == AgentState::Idle).await;

    llm.script([Reply::error(401, "bad key")]);
    let turn = client.message_send(session.id.clone(), "again".into()).await.unwrap();
    follow(&client, &turn.turn_id).await;
    let failed = activity_until(&mut activity, |a| a.state == AgentState::Error).await;
    assert!(failed.last_error.is_some());
    assert_eq!(client.activity_get().await.unwrap(), failed);

    let paused = client.agent_pause(true).await.unwrap();
    assert!(paused.paused);
    let refused = client.message_send(session.id.clone(), "more".into()).await.unwrap_err();
    assert!(refused.to_string().contains("paused"), "{refused}");
    client.agent_pause(false).await.unwrap();
    llm.script([Reply::text(&["Fine."])]);
    let turn = client.message_send(session.id, "more".into()).await.unwrap();
    follow(&client, &turn.turn_id).await;
    // A turn that starts clears the last error.
    activity_until(&mut activity, |a| a.state == AgentState::Idle && a.last_error.is_none()).await;
}

#[tokio::test]
async fn tool_rules_change_from_the_api_take_effect_at_once_and_land_in_the_config_file() {
    let llm = MockLlm::start().await;
    let pryx = Pryx::start(Options::with_llm(&llm)).await;
    let workspace = pryx.data_dir().join("workspace");
    std::fs::create_dir_all(&workspace).unwrap();
    std::fs::write(workspace.join("old.txt"), "x").unwrap();
    let client = pryx.client().await;

    let tools = client.tools_list().await.unwrap();
    let delete = tools.iter().find(|t| t.name == "fs_delete").unwrap();
    assert_eq!((delete.source.as_str(), delete.risk.as_str(), delete.rule.as_str()), ("builtin", "destructive", "ask"));
    assert_eq!(delete.configured, None);
    assert_eq!(tools.iter().find(|t| t.name == "fs_read").unwrap().rule, Rule::Allow);

    // Allow: the next delete runs without a question.
    let changed = client.tools_set_rule("fs_delete".into(), Some(Rule::Allow)).await.unwrap();
    assert_eq!((changed.rule.as_str(), changed.configured.map(Rule::as_str)), ("allow", Some("allow")));
    llm.script([delete_call("old.txt"), Reply::text(&["Gone."])]);
    let session = client.session_create(None).await.unwrap();
    let turn = client.message_send(session.id.clone(), "delete old.txt".into()).await.unwrap();
    follow(&client, &turn.turn_id).await;
    assert!(!workspace.join("old.txt").exists());
    assert!(client.approval_list(Some(true)).await.unwrap().is_empty(), "nobody was asked");
    let config = std::fs::read_to_string(pryx.home.join("config.toml")).unwrap();
    assert!(config.contains("[policy.tools]") && config.contains("fs_delete = \"allow\""), "{config}");

    // Deny wins over everything; null goes back to the default.
    client.tools_set_rule("shell_execute".into(), Some(Rule::Deny)).await.unwrap();
    assert_eq!(client.tools_list().await.unwrap().iter().find(|t| t.name == "shell_execute").unwrap().rule, Rule::Deny);
    let reset = client.tools_set_rule("fs_delete".into(), None).await.unwrap();
    assert_eq!((reset.rule.as_str(), reset.configured), ("ask", None));
    assert!(!std::fs::read_to_string(pryx.home.join("config.toml")).unwrap().contains("fs_delete"));

    // Bad input: a clear error, nothing changed.
    let unknown = client.tools_set_rule("no_such_tool".into(), Some(Rule::Allow)).await.unwrap_err();
    assert!(unknown.to_string().contains("no_such_tool"), "{unknown}");
    // A rule outside the set cannot be sent with the typed client: send the raw request.
    let bad = jsonrpsee::core::client::ClientT::request::<serde_json::Value, _>(
        &client,
        "tools.set_rule",
        jsonrpsee::rpc_params!["fs_write", "sometimes"],
    )
    .await
    .unwrap_err();
    assert!(bad.to_string().contains("sometimes") && bad.to_string().contains("allow"), "{bad}");
    assert_eq!(client.tools_list().await.unwrap().iter().find(|t| t.name == "fs_write").unwrap().rule, Rule::Ask);
}
