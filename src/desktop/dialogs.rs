//! Native dialogs (rfd, GTK 3 on Linux): approval questions, and notices (a bad deep link,
//! "Pryx keeps running in the tray"). Every dialog is asynchronous: neither the event loop
//! nor the agent ever waits on one.

use std::future::Future;

use pryx_api::{Approval, ApprovalDecision};
use rfd::{AsyncMessageDialog, MessageButtons, MessageDialogResult, MessageLevel};

const ALLOW_ONCE: &str = "Allow once";
const ALLOW_FOR_SESSION: &str = "Allow for session";
const DENY: &str = "Deny";
/// Arguments shown in the dialog are cut here; the page shows them whole.
const MAX_ARGUMENTS_CHARS: usize = 600;

/// The window title of an approval's dialog; unique per request, so it can be found again.
pub fn approval_title(approval_id: &str, tool: &str) -> String {
    format!("Pryx: allow {tool}? {}", title_tag(approval_id))
}

/// The end of the title that names the request.
fn title_tag(approval_id: &str) -> String {
    format!("[{}]", approval_id.chars().take(8).collect::<String>())
}

/// The text a person decides on: what, where, with which arguments.
pub fn approval_text(approval: &Approval, workspace: &str) -> String {
    let mut arguments: String = approval.arguments.chars().take(MAX_ARGUMENTS_CHARS).collect();
    if approval.arguments.chars().count() > MAX_ARGUMENTS_CHARS {
        arguments.push('…');
    }
    format!(
        "Your agent wants to run {tool} ({risk}):\n\n{summary}\n\nWorkspace: {workspace}\nArguments: {arguments}\n\n\
         Escape or closing this dialog denies it.",
        tool = approval.tool,
        risk = approval.risk,
        summary = approval.summary,
    )
}

/// Ask about `approval`; resolves with the person's decision (closing the dialog denies).
pub fn approval_dialog(approval: &Approval, workspace: &str) -> impl Future<Output = ApprovalDecision> + Send {
    let dialog = AsyncMessageDialog::new()
        .set_level(MessageLevel::Warning)
        .set_title(approval_title(&approval.id, &approval.tool))
        .set_description(approval_text(approval, workspace))
        .set_buttons(MessageButtons::YesNoCancelCustom(ALLOW_ONCE.into(), ALLOW_FOR_SESSION.into(), DENY.into()))
        .show();
    async move { decision_of(dialog.await) }
}

/// rfd reports custom buttons as Yes / No / Cancel on GTK and by their labels elsewhere.
fn decision_of(result: MessageDialogResult) -> ApprovalDecision {
    match result {
        MessageDialogResult::Yes => ApprovalDecision::AllowOnce,
        MessageDialogResult::No => ApprovalDecision::AllowForSession,
        MessageDialogResult::Custom(label) if label == ALLOW_ONCE => ApprovalDecision::AllowOnce,
        MessageDialogResult::Custom(label) if label == ALLOW_FOR_SESSION => ApprovalDecision::AllowForSession,
        _ => ApprovalDecision::Deny,
    }
}

/// Close the dialog of an approval that was settled elsewhere.
pub fn close_approval_dialog(approval_id: &str) {
    let tag = title_tag(approval_id);
    #[cfg(target_os = "linux")]
    gtk::glib::idle_add_once(move || {
        use gtk::prelude::{Cast, GtkWindowExt};
        for widget in gtk::Window::list_toplevels() {
            if let Ok(window) = widget.downcast::<gtk::Window>() {
                if window.title().is_some_and(|t| t.starts_with("Pryx: allow") && t.ends_with(&tag)) {
                    window.close();
                }
            }
        }
    });
    #[cfg(not(target_os = "linux"))]
    let _ = tag;
}

/// A notice with an OK button; nothing waits for it.
pub fn notice(title: &str, text: &str, level: MessageLevel) {
    let shown = AsyncMessageDialog::new().set_level(level).set_title(title).set_description(text).show();
    // The dialog lives until it is answered; its result is of no interest.
    drop(shown);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buttons_map_to_decisions_and_anything_else_denies() {
        assert_eq!(decision_of(MessageDialogResult::Yes), ApprovalDecision::AllowOnce);
        assert_eq!(decision_of(MessageDialogResult::No), ApprovalDecision::AllowForSession);
        assert_eq!(decision_of(MessageDialogResult::Cancel), ApprovalDecision::Deny);
        assert_eq!(
            decision_of(MessageDialogResult::Custom(ALLOW_FOR_SESSION.into())),
            ApprovalDecision::AllowForSession
        );
        assert_eq!(decision_of(MessageDialogResult::Ok), ApprovalDecision::Deny);
    }
}
