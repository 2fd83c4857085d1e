//! Approvals: the modal that asks about each waiting tool call, the page for one request
//! (deep links from the tray and notifications open it), and the history.

use leptos::html;
use leptos::prelude::*;
use leptos::task::spawn_local;
use pryx_api::{Approval, ApprovalDecision, ApprovalStatus, PryxApiClient};

use crate::route::Route;
use crate::state::Agent;
use crate::text::pretty_json;

/// The oldest waiting request, over whatever screen is open, unless the user put it off
/// ("Later") or is looking at it on its own page already.
#[component]
pub fn ApprovalModal(#[prop(into)] route: Signal<Route>) -> impl IntoView {
    let agent = expect_context::<Agent>();
    let later = RwSignal::new(Vec::<String>::new());
    let shown = move || {
        let later = later.get();
        let route = route.get();
        agent.pending.get().into_iter().find(|a| !later.contains(&a.id) && route != Route::Approval(a.id.clone()))
    };
    view! {
        {move || shown().map(|approval| {
            let id = approval.id.clone();
            let waiting = agent.pending.with(|p| p.len());
            view! {
                <div class="modal-backdrop">
                    <div class="modal" role="dialog" aria-modal="true" aria-label="Approval needed">
                        <ApprovalCard approval autofocus=true/>
                        <div class="modal-foot">
                            <span class="muted small">{(waiting > 1).then(|| format!("{} more waiting", waiting - 1))}</span>
                            <button class="ghost small" on:click=move |_| later.update(|l| l.push(id.clone()))>"Later"</button>
                        </div>
                    </div>
                </div>
            }
        })}
    }
}

/// One request: what the tool wants to do, and the three answers while it waits.
#[component]
pub fn ApprovalCard(approval: Approval, #[prop(optional)] autofocus: bool) -> impl IntoView {
    let agent = expect_context::<Agent>();
    let note = RwSignal::new(String::new());
    let answering = RwSignal::new(false);
    let settled = RwSignal::new(None::<Approval>);
    let first_button = NodeRef::<html::Button>::new();
    if autofocus {
        Effect::new(move |_| {
            if let Some(button) = first_button.get() {
                let _ = button.focus();
            }
        });
    }
    let id = approval.id.clone();
    let answer = move |decision: ApprovalDecision| {
        let id = id.clone();
        answering.set(true);
        spawn_local(async move {
            let note = Some(note.get_untracked()).filter(|n| !n.trim().is_empty());
            let answered = agent
                .call(
                    "Could not answer",
                    |c| async move { c.approval_answer(id, decision, note, Some("ui".into())).await },
                )
                .await;
            if let Some(approval) = answered {
                agent.pending.update(|p| p.retain(|a| a.id != approval.id));
                settled.set(Some(approval));
            } else {
                // Answered elsewhere, expired or the agent restarted: show what is true now.
                agent.refresh_pending().await;
            }
            answering.set(false);
        });
    };
    let (a1, a2, a3) = (answer.clone(), answer.clone(), answer);
    let arguments = pretty_json(&approval.arguments);
    let risk = approval.risk;
    let is_pending = approval.status == ApprovalStatus::Pending;
    let original = approval.clone();
    let outcome = move || {
        let current = settled.get().unwrap_or_else(|| original.clone());
        (current.status != ApprovalStatus::Pending).then(|| view! { <p class="outcome">{outcome_text(&current)}</p> })
    };
    view! {
        <div class="approval-card">
            <div class="approval-head">
                <span class=format!("risk {risk}")>{risk.as_str()}</span>
                <h2>"Allow " <code>{approval.tool.clone()}</code> "?"</h2>
            </div>
            <p class="summary">{approval.summary.clone()}</p>
            <div class="label">"Arguments"</div>
            <pre class="arguments">{arguments}</pre>
            <p class="muted small">{format!("From a {} chat · expires {}", approval.channel, crate::page::clock_time(approval.expires_at))}</p>
            {outcome}
            <Show when=move || is_pending && settled.with(|s| s.is_none())>
                <textarea class="note" rows="2" placeholder="Note for the model (optional)" aria-label="Note"
                    prop:value=move || note.get() on:input=move |ev| note.set(event_target_value(&ev))></textarea>
                <div class="actions">
                    <button class="primary" node_ref=first_button disabled=move || answering.get()
                        on:click={ let a = a1.clone(); move |_| a(ApprovalDecision::AllowOnce) }>"Allow once"</button>
                    <button disabled=move || answering.get()
                        on:click={ let a = a2.clone(); move |_| a(ApprovalDecision::AllowForSession) }>"Allow for this chat"</button>
                    <button class="danger" disabled=move || answering.get()
                        on:click={ let a = a3.clone(); move |_| a(ApprovalDecision::Deny) }>"Deny"</button>
                </div>
            </Show>
        </div>
    }
}

fn outcome_text(approval: &Approval) -> String {
    let by = approval.answered_by.as_deref().map(|by| format!(" (from {by})")).unwrap_or_default();
    let what = match (approval.status, approval.decision) {
        (ApprovalStatus::Allowed, Some(ApprovalDecision::AllowForSession)) => "Allowed for this chat",
        (ApprovalStatus::Allowed, _) => "Allowed once",
        (ApprovalStatus::Denied, _) => "Denied",
        (ApprovalStatus::TimedOut, _) => "Nobody answered in time: denied",
        (ApprovalStatus::Expired, _) => "The agent stopped while it waited: denied",
        (ApprovalStatus::Cancelled, _) => "The turn was stopped",
        (ApprovalStatus::Pending, _) => "Waiting",
    };
    let note = approval.note.as_deref().map(|n| format!(" · note: {n}")).unwrap_or_default();
    format!("{what}{by}{note}")
}

/// `#/approve/ID`: one request, waiting or settled.
#[component]
pub fn ApprovalPage(#[prop(into)] id: Signal<String>) -> impl IntoView {
    let agent = expect_context::<Agent>();
    let found = RwSignal::new(None::<Option<Approval>>);
    Effect::new(move |_| {
        let wanted = id.get();
        agent.connection.track();
        if wanted.is_empty() {
            return;
        }
        // A waiting request is in hand already; a settled one is looked up in the history.
        let waiting = agent.pending.with(|p| p.iter().find(|a| a.id == wanted).cloned());
        spawn_local(async move {
            let found_now = match waiting {
                Some(approval) => Ok(Some(approval)),
                None => agent
                    .try_call(|c| async move { c.approval_list(Some(true)).await })
                    .await
                    .map(|all| all.into_iter().find(|a| a.id == wanted)),
            };
            let still_shown = id.get_untracked() == wanted;
            if let (Ok(approval), true) = (found_now, still_shown) {
                match &approval {
                    Some(approval) => crate::page::set_title(&format!("Approval: {}", approval.tool)),
                    None => crate::page::set_title("Approval"),
                }
                found.set(Some(approval));
            }
        });
    });
    view! {
        <section class="page narrow">
            {move || match found.get() {
                None => view! { <p class="muted">"Loading…"</p> }.into_any(),
                Some(None) => view! { <p class="error-box">"There is no such approval request."</p> }.into_any(),
                Some(Some(approval)) => view! { <ApprovalCard approval autofocus=true/> }.into_any(),
            }}
        </section>
    }
}

/// `#/approvals`: what waits now, and every earlier decision.
#[component]
pub fn ApprovalsPage() -> impl IntoView {
    let agent = expect_context::<Agent>();
    crate::page::set_title("Approvals");
    let history = RwSignal::new(Vec::<Approval>::new());
    Effect::new(move |_| {
        agent.connection.track();
        agent.pending.track();
        spawn_local(async move {
            let Ok(client) = agent.client() else { return };
            if let Ok(mut all) = client.approval_list(Some(true)).await {
                all.retain(|a| a.status != ApprovalStatus::Pending);
                all.sort_unstable_by_key(|a| std::cmp::Reverse(a.settled_at.unwrap_or(a.created_at)));
                history.set(all);
            }
        });
    });
    view! {
        <section class="page">
            <h1>"Approvals"</h1>
            <p class="muted">"Tool calls that change files, run commands or reach out wait here for your decision."</p>
            <h2>"Waiting"</h2>
            <Show when=move || agent.pending.with(|p| !p.is_empty()) fallback=|| view! { <p class="empty">"Nothing is waiting."</p> }>
                <div class="cards">
                    <For each=move || agent.pending.get() key=|a| a.id.clone() let:approval>
                        <ApprovalCard approval/>
                    </For>
                </div>
            </Show>
            <h2>"History"</h2>
            <Show when=move || history.with(|h| !h.is_empty()) fallback=|| view! { <p class="empty">"No decisions yet."</p> }>
                <table class="history">
                    <thead><tr><th>"When"</th><th>"Tool"</th><th>"What"</th><th>"Decision"</th></tr></thead>
                    <tbody>
                        <For each=move || history.get() key=|a| (a.id.clone(), a.settled_at) let:approval>
                            <tr>
                                <td class="nowrap">{crate::page::clock_time(approval.settled_at.unwrap_or(approval.created_at))}</td>
                                <td><a href=Route::Approval(approval.id.clone()).hash()><code>{approval.tool.clone()}</code></a></td>
                                <td>{approval.summary.clone()}</td>
                                <td>{outcome_text(&approval)}</td>
                            </tr>
                        </For>
                    </tbody>
                </table>
            </Show>
        </section>
    }
}
