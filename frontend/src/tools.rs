//! The Tools screen: MCP servers (live status, add from a form or a pasted `mcpServers`
//! document, restart, remove, sign in) and the tools each offers with their annotations
//! and what the approval policy does with them. Everything applies at once: the API
//! writes the config file and the agent reloads it.

use std::collections::BTreeMap;

use leptos::ev;
use leptos::prelude::*;
use leptos::task::spawn_local;
use pryx_api::{
    McpOverview, McpServerConfig, McpServerState, McpServerStatus, McpToolInfo, PryxApiClient, Rule, ToolPolicy,
};

use crate::state::Agent;
use crate::text::first_line;

#[component]
pub fn ToolsPage() -> impl IntoView {
    let agent = expect_context::<Agent>();
    crate::page::set_title("Tools");
    let overview = RwSignal::new(None::<McpOverview>);
    let tools = RwSignal::new(Vec::<McpToolInfo>::new());
    let policies = RwSignal::new(Vec::<ToolPolicy>::new());
    // The tools and their rules change when a server gets ready or goes away.
    // Both lists are set together, so no row ever shows a tool without its rule.
    let reload_tools = move || {
        spawn_local(async move {
            let (offered, rules) = futures::join!(
                agent.try_call(|c| async move { c.mcp_tools(None).await }),
                agent.try_call(|c| async move { c.tools_list().await }),
            );
            if let (Ok(offered), Ok(rules)) = (offered, rules) {
                policies.set(rules);
                tools.set(offered);
            }
        });
    };
    let reload = move || {
        spawn_local(async move {
            if let Ok(list) = agent.try_call(|c| async move { c.mcp_list().await }).await {
                overview.set(Some(list));
            }
        });
        reload_tools();
    };
    let builtins = move || {
        let mut list = policies.get();
        list.retain(|p| p.source == "builtin");
        list
    };
    provide_context(Policies { list: policies, reload: Callback::new(move |()| reload()) });
    // Load on every (re)connection and follow every status change while the screen shows.
    Effect::new(move |_| {
        agent.connection.track();
        reload();
        crate::state::while_shown(async move {
            let Ok(mut stream) = agent.try_call(|c| async move { c.mcp_subscribe().await }).await else { return };
            while let Some(Ok(status)) = stream.next().await {
                let changes_tools = status.state == McpServerState::Ready || status.tools == 0;
                overview.update(|o| {
                    if let Some(o) = o {
                        match o.servers.iter_mut().find(|s| s.name == status.name) {
                            Some(known) => *known = status,
                            None => o.servers.push(status),
                        }
                    }
                });
                if changes_tools {
                    reload_tools();
                }
            }
        });
    });
    view! {
        <section class="page">
            <h1>"Tools"</h1>
            <p class="muted">"Tools from MCP servers, offered to the model as " <code>"SERVER__TOOL"</code> ". Changes apply at once; nothing needs a restart."</p>
            {move || overview.get().and_then(|o| o.config_error).map(|e| view! {
                <p class="error-box">{format!("The config file has an edit that does not load (servers keep running as they were): {e}")}</p>
            })}
            <h2>"Built-in tools"</h2>
            <p class="muted small">"Reads run without asking; anything that writes, deletes or runs a program asks first, unless you say otherwise here. Deny always wins."</p>
            <table class="tools builtin">
                <thead><tr><th>"Tool"</th><th>"What it does"</th><th>"Risk"</th><th>"Policy"</th></tr></thead>
                <tbody>
                    <For each=builtins
                        key=|p| (p.name.clone(), p.rule, p.configured) let:tool>
                        <tr data-tool=tool.name.clone()>
                            <td><code>{tool.name.clone()}</code></td>
                            <td class="description">{first_line(&tool.description, 160)}</td>
                            <td><span class=format!("risk {}", tool.risk)>{tool.risk.as_str()}</span></td>
                            <td><RuleSelect tool=tool.name.clone()/></td>
                        </tr>
                    </For>
                </tbody>
            </table>
            <h2>"MCP servers"</h2>
            <Show when=move || overview.with(|o| o.as_ref().is_some_and(|o| !o.servers.is_empty()))
                fallback=|| view! { <p class="empty">"No MCP servers yet. Add one below, or paste the " <code>"mcpServers"</code> " part of a Claude Desktop or Cursor config."</p> }>
                <div class="servers">
                    <For each=move || overview.get().map(|o| o.servers).unwrap_or_default()
                        key=|s| format!("{}|{:?}|{}|{}", s.name, s.state, s.tools, s.restarts)
                        let:server>
                        <ServerCard server tools on_change=reload/>
                    </For>
                </div>
            </Show>
            <AddServer on_added=reload/>
        </section>
    }
}

#[component]
fn ServerCard(
    server: McpServerStatus,
    tools: RwSignal<Vec<McpToolInfo>>,
    on_change: impl Fn() + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let agent = expect_context::<Agent>();
    let name = server.name.clone();
    let (state_text, state_class) = match server.state {
        McpServerState::Starting => ("starting", "busy"),
        McpServerState::Ready => ("ready", "idle"),
        McpServerState::Failed => ("failed", "error"),
        McpServerState::NeedsAuth => ("needs sign-in", "ask"),
        McpServerState::Disabled => ("disabled", "paused"),
    };
    let confirming = RwSignal::new(false);
    let restart = {
        let name = name.clone();
        move |_| {
            act(
                agent,
                "Could not restart",
                name.clone(),
                |c, n| async move { c.mcp_restart(n).await.map(drop) },
                on_change,
            )
        }
    };
    let remove = {
        let name = name.clone();
        move |_| act(agent, "Could not remove", name.clone(), |c, n| async move { c.mcp_remove(n).await }, on_change)
    };
    let login = {
        let name = name.clone();
        move |_| {
            let name = name.clone();
            spawn_local(async move {
                if let Some(url) =
                    agent.call("Could not start the sign-in", |c| async move { c.mcp_login(name).await }).await
                {
                    if let Some(window) = web_sys::window() {
                        let _ = window.open_with_url_and_target(&url, "_blank");
                    }
                }
            });
        }
    };
    let own_tools = {
        let name = name.clone();
        move || tools.with(|t| t.iter().filter(|t| t.server == name).cloned().collect::<Vec<_>>())
    };
    let details = [
        Some(server.transport.clone()),
        server.server_info.clone(),
        server.protocol_version.clone().map(|v| format!("protocol {v}")),
        server.pid.map(|pid| format!("pid {pid}")),
        (server.restarts > 0).then(|| format!("restarted {} times", server.restarts)),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(" · ");
    let needs_auth = server.state == McpServerState::NeedsAuth;
    view! {
        <div class="server-card" data-server=name.clone()>
            <div class="server-head">
                <span class=format!("status {state_class}")><span class="dot"></span>{state_text}</span>
                <h3>{name.clone()}</h3>
                <span class="muted small">{details}</span>
                <span class="spacer"></span>
                {needs_auth.then(|| view! { <button class="primary small" on:click=login.clone()>"Sign in"</button> })}
                <button class="small" on:click=restart>"Restart"</button>
                <Show when=move || confirming.get() fallback=move || view! {
                    <button class="small danger" on:click=move |_| confirming.set(true)>"Remove"</button>
                }>
                    <button class="small danger" on:click=remove.clone()>"Remove it"</button>
                    <button class="small ghost" on:click=move |_| confirming.set(false)>"Keep"</button>
                </Show>
            </div>
            {server.reason.clone().map(|reason| view! { <p class="error-box small">{reason}</p> })}
            <Show when={ let own = own_tools.clone(); move || !own().is_empty() }>
                <table class="tools">
                    <thead><tr><th>"Tool"</th><th>"What it does"</th><th>"Hints"</th><th>"Policy"</th></tr></thead>
                    <tbody>
                        <For each=own_tools.clone() key=|t| t.name.clone() let:tool>
                            <tr>
                                <td><code>{tool.tool.clone()}</code>{tool.title.clone().map(|t| view! { <div class="muted small">{t}</div> })}</td>
                                <td class="description">{first_line(&tool.description, 160)}</td>
                                <td>{hints(&tool).into_iter().map(|h| view! { <span class="badge">{h}</span> " " }).collect_view()}</td>
                                <td><RuleSelect tool=tool.name.clone()/></td>
                            </tr>
                        </For>
                    </tbody>
                </table>
            </Show>
        </div>
    }
}

/// Do something to the server `name`, then reload the screen (a failure is a notice).
fn act<Fut>(
    agent: Agent,
    what: &'static str,
    name: String,
    call: impl FnOnce(std::sync::Arc<jsonrpsee::core::client::Client>, String) -> Fut + 'static,
    then: impl Fn() + 'static,
) where
    Fut: std::future::Future<Output = Result<(), jsonrpsee::core::ClientError>>,
{
    spawn_local(async move {
        agent.call(what, |c| call(c, name)).await;
        then();
    });
}

/// The tools' rules, shared by every rule picker on the screen.
#[derive(Clone, Copy)]
struct Policies {
    list: RwSignal<Vec<ToolPolicy>>,
    reload: Callback<()>,
}

/// Allow / Ask / Deny (or the default) for one tool, saved as soon as it is picked.
#[component]
fn RuleSelect(tool: String) -> impl IntoView {
    let agent = expect_context::<Agent>();
    let Policies { list, reload } = expect_context::<Policies>();
    let name = tool.clone();
    let current = move || list.with(|l| l.iter().find(|p| p.name == name).cloned());
    let label = {
        let current = current.clone();
        move || match current() {
            Some(p) if p.configured.is_none() => format!("Default: {}", p.rule),
            _ => "Default".to_owned(),
        }
    };
    let is = move |rule: Rule| {
        let current = current.clone();
        move || current().and_then(|p| p.configured) == Some(rule)
    };
    let change = move |ev: ev::Event| {
        let value = event_target_value(&ev);
        let tool = tool.clone();
        spawn_local(async move {
            let rule = match value.as_str() {
                "allow" => Some(Rule::Allow),
                "ask" => Some(Rule::Ask),
                "deny" => Some(Rule::Deny),
                _ => None,
            };
            agent.call("Could not change the rule", |c| async move { c.tools_set_rule(tool, rule).await }).await;
            reload.run(());
        });
    };
    view! {
        <select class="rule-select" aria-label="Policy" on:change=change>
            <option value="">{label}</option>
            <option value="allow" selected=is(Rule::Allow)>"Allow"</option>
            <option value="ask" selected=is(Rule::Ask)>"Ask"</option>
            <option value="deny" selected=is(Rule::Deny)>"Deny"</option>
        </select>
    }
}

/// The server's annotations, in words.
fn hints(tool: &McpToolInfo) -> Vec<&'static str> {
    let h = &tool.hints;
    let mut out = Vec::new();
    if h.read_only == Some(true) {
        out.push("read-only");
    }
    if h.destructive == Some(true) {
        out.push("destructive");
    }
    if h.idempotent == Some(true) {
        out.push("idempotent");
    }
    if h.open_world == Some(true) {
        out.push("open world");
    }
    out
}

/// What the add form holds, before it becomes an `McpServerConfig`.
#[derive(Clone, Default)]
struct Draft {
    name: String,
    kind_url: bool,
    command: String,
    args: String,
    env: String,
    url: String,
    headers: String,
    trusted: bool,
}

impl Draft {
    fn to_config(&self) -> Result<McpServerConfig, String> {
        let mut config = McpServerConfig { trusted: self.trusted, ..McpServerConfig::default() };
        if self.kind_url {
            if self.url.trim().is_empty() {
                return Err("Give the server's URL.".into());
            }
            config.url = Some(self.url.trim().to_owned());
            config.headers = pairs(&self.headers, ':')?;
        } else {
            if self.command.trim().is_empty() {
                return Err("Give the command that starts the server.".into());
            }
            config.command = Some(self.command.trim().to_owned());
            config.args = self.args.lines().map(str::trim).filter(|a| !a.is_empty()).map(str::to_owned).collect();
            config.env = pairs(&self.env, '=')?;
        }
        Ok(config)
    }
}

/// `KEY=VALUE` (or `Name: value`) lines.
fn pairs(text: &str, separator: char) -> Result<BTreeMap<String, String>, String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(|line| match line.split_once(separator) {
            Some((key, value)) if !key.trim().is_empty() => Ok((key.trim().to_owned(), value.trim().to_owned())),
            _ => Err(format!("\"{line}\" is not NAME{separator}VALUE")),
        })
        .collect()
}

#[component]
fn AddServer(on_added: impl Fn() + Copy + Send + Sync + 'static) -> impl IntoView {
    let agent = expect_context::<Agent>();
    let draft = RwSignal::new(Draft::default());
    let pasted = RwSignal::new(String::new());
    let busy = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);
    let field = move |get: fn(&Draft) -> String, set: fn(&mut Draft, String)| {
        (move || draft.with(get), move |ev: ev::Event| draft.update(|d| set(d, event_target_value(&ev))))
    };
    let add = move |ev: ev::SubmitEvent| {
        ev.prevent_default();
        let current = draft.get_untracked();
        let config = match current.to_config() {
            Ok(config) => config,
            Err(e) => return error.set(Some(e)),
        };
        let name = current.name.trim().to_owned();
        if name.is_empty() {
            return error.set(Some("Give the server a name.".into()));
        }
        error.set(None);
        busy.set(true);
        spawn_local(async move {
            let result = agent.try_call(|c| async move { c.mcp_add(name, config, None).await }).await;
            match result {
                Ok(status) => {
                    draft.set(Draft::default());
                    let state = match status.state {
                        McpServerState::Ready => format!("ready with {} tools", status.tools),
                        McpServerState::Failed => format!("failed: {}", status.reason.unwrap_or_default()),
                        McpServerState::NeedsAuth => "it needs a sign-in".to_owned(),
                        McpServerState::Starting => "starting".to_owned(),
                        McpServerState::Disabled => "disabled".to_owned(),
                    };
                    agent.notify(format!("Added {}: {state}", status.name), status.state == McpServerState::Failed);
                }
                Err(e) => error.set(Some(e)),
            }
            busy.set(false);
            on_added();
        });
    };
    let import = move |_| {
        let json = pasted.get_untracked();
        if json.trim().is_empty() {
            return;
        }
        busy.set(true);
        spawn_local(async move {
            let result = agent.try_call(|c| async move { c.mcp_import(json, None).await }).await;
            match result {
                Ok(names) if names.is_empty() => error.set(Some("Every server in it is configured already.".into())),
                Ok(names) => {
                    error.set(None);
                    pasted.set(String::new());
                    agent.notify(format!("Imported {}", names.join(", ")), false);
                }
                Err(e) => error.set(Some(e)),
            }
            busy.set(false);
            on_added();
        });
    };
    let (name, set_name) = field(|d| d.name.clone(), |d, v| d.name = v);
    let (command, set_command) = field(|d| d.command.clone(), |d, v| d.command = v);
    let (args, set_args) = field(|d| d.args.clone(), |d, v| d.args = v);
    let (env, set_env) = field(|d| d.env.clone(), |d, v| d.env = v);
    let (url, set_url) = field(|d| d.url.clone(), |d, v| d.url = v);
    let (headers, set_headers) = field(|d| d.headers.clone(), |d, v| d.headers = v);
    let is_url = move || draft.with(|d| d.kind_url);
    view! {
        <h2>"Add a server"</h2>
        {move || error.get().map(|e| view! { <p class="error-box">{e}</p> })}
        <div class="add-server">
            <form class="card form" on:submit=add>
                <label><span>"Name"</span> <input name="name" placeholder="e.g. files" prop:value=name on:input=set_name/></label>
                <div class="segmented" role="radiogroup">
                    <button type="button" class:on=move || !is_url() on:click=move |_| draft.update(|d| d.kind_url = false)>"Local program"</button>
                    <button type="button" class:on=is_url on:click=move |_| draft.update(|d| d.kind_url = true)>"Remote URL"</button>
                </div>
                <Show when=is_url fallback=move || view! {
                    <label><span>"Command"</span> <input name="command" placeholder="npx" prop:value=command on:input=set_command/></label>
                    <label><span>"Arguments, one per line"</span> <textarea name="args" rows="3" placeholder="-y\n@modelcontextprotocol/server-filesystem\n/home/me/notes" prop:value=args on:input=set_args></textarea></label>
                    <label><span>"Environment, NAME=VALUE per line (" <code>"secret:NAME"</code> " reads the keychain)"</span> <textarea name="env" rows="2" prop:value=env on:input=set_env></textarea></label>
                }>
                    <label><span>"URL"</span> <input name="url" placeholder="https://example.com/mcp" prop:value=url on:input=set_url/></label>
                    <label><span>"Headers, Name: value per line"</span> <textarea name="headers" rows="2" placeholder="Authorization: secret:mcp/github" prop:value=headers on:input=set_headers></textarea></label>
                </Show>
                <label class="check"><input type="checkbox" prop:checked=move || draft.with(|d| d.trusted)
                    on:change=move |ev| draft.update(|d| d.trusted = event_target_checked(&ev))/>
                    "Trust every tool of this server (no approval prompts)"</label>
                <button class="primary" type="submit" disabled=move || busy.get()>"Add server"</button>
            </form>
            <div class="card form">
                <label><span>"…or paste an " <code>"mcpServers"</code> " document"</span>
                    <textarea name="import" rows="9" placeholder="{\"mcpServers\": {\"memory\": {\"command\": \"npx\", \"args\": [\"-y\", \"@modelcontextprotocol/server-memory\"]}}}"
                        prop:value=move || pasted.get() on:input=move |ev| pasted.set(event_target_value(&ev))></textarea></label>
                <button type="button" on:click=import disabled=move || busy.get()>"Import"</button>
            </div>
        </div>
    }
}
