//! The Traces screen: the last traces of the agent's work (turns, LLM requests, tool and
//! MCP calls, approval waits, webhooks) and a live Gantt chart of one, drawn as SVG.
//! Spans stream in as they open and close; open spans grow until they end. Zoom with the
//! wheel or the buttons, click a bar for its details, filter by session.

use std::collections::HashMap;

use leptos::ev;
use leptos::prelude::*;
use pryx_api::{PryxApiClient, SpanQuery, SpanRecord, SpanStatus};

use crate::gantt::{self, Bar};
use crate::state::Agent;

/// How many traces the list shows (and how many spans are loaded to find them).
const TRACES_SHOWN: usize = 30;
const SPANS_LOADED: u32 = 3000;
const ROW_HEIGHT: usize = 26;

fn now_us() -> i64 {
    (js_sys::Date::now() * 1000.0) as i64
}

/// One trace in the list.
#[derive(Debug, Clone, PartialEq)]
struct TraceSummary {
    trace_id: String,
    name: String,
    session_id: Option<String>,
    start_us: i64,
    end_us: Option<i64>,
    spans: usize,
    error: bool,
}

fn summaries(spans: &HashMap<String, SpanRecord>) -> Vec<TraceSummary> {
    let mut traces: HashMap<&str, TraceSummary> = HashMap::new();
    for span in spans.values() {
        let entry = traces.entry(span.trace_id.as_str()).or_insert_with(|| TraceSummary {
            trace_id: span.trace_id.clone(),
            name: span.name.clone(),
            session_id: None,
            start_us: span.start_us,
            end_us: Some(span.start_us),
            spans: 0,
            error: false,
        });
        entry.spans += 1;
        entry.error |= span.status == SpanStatus::Error;
        entry.session_id = entry.session_id.take().or_else(|| span.session_id.clone());
        if span.parent_span_id.is_none() || span.start_us < entry.start_us {
            if span.parent_span_id.is_none() {
                entry.name = span.name.clone();
            }
            entry.start_us = entry.start_us.min(span.start_us);
        }
        entry.end_us = match (entry.end_us, span.end_us) {
            (Some(a), Some(b)) => Some(a.max(b)),
            _ => None,
        };
    }
    let mut list: Vec<TraceSummary> = traces.into_values().collect();
    list.sort_unstable_by_key(|t| std::cmp::Reverse(t.start_us));
    list.truncate(TRACES_SHOWN);
    list
}

#[component]
pub fn TracesPage() -> impl IntoView {
    let agent = expect_context::<Agent>();
    crate::page::set_title("Traces");
    let filter = RwSignal::new(None::<String>);
    let spans = RwSignal::new(HashMap::<String, SpanRecord>::new());
    let chosen = RwSignal::new(None::<String>);
    let selected_span = RwSignal::new(None::<String>);

    // Load the stored spans, then follow new ones; again when the filter or the connection
    // changes (the previous subscription ends with its effect run, or with the screen).
    Effect::new(move |_| {
        agent.connection.track();
        let session = filter.get();
        spans.set(HashMap::new());
        chosen.set(None);
        crate::state::while_shown(async move {
            let Ok(client) = agent.client() else { return };
            let Ok(mut stream) = client.spans_subscribe(session.clone()).await else { return };
            if let Ok(stored) = client
                .spans_query(SpanQuery {
                    session_id: session,
                    since_us: None,
                    limit: Some(SPANS_LOADED),
                    newest: Some(true),
                })
                .await
            {
                spans.update(|all| {
                    for span in stored {
                        all.entry(span.span_id.clone()).or_insert(span);
                    }
                });
            }
            while let Some(Ok(span)) = stream.next().await {
                spans.update(|all| {
                    all.insert(span.span_id.clone(), span);
                });
            }
        });
    });
    let traces = Memo::new(move |_| spans.with(summaries));
    // The trace on the chart: the one chosen, else the newest.
    let shown = Memo::new(move |_| chosen.get().or_else(|| traces.with(|t| t.first().map(|t| t.trace_id.clone()))));

    view! {
        <section class="page traces">
            <div class="page-head">
                <h1>"Traces"</h1>
                <span class="spacer"></span>
                <label class="inline">"Session "
                    <select on:change=move |ev| {
                        let value = event_target_value(&ev);
                        filter.set((!value.is_empty()).then_some(value));
                    }>
                        <option value="">"All sessions"</option>
                        <For each=move || agent.sessions.get() key=|s| s.id.clone() let:session>
                            <option value=session.id.clone()>{session.title.clone()}</option>
                        </For>
                    </select>
                </label>
            </div>
            <div class="traces-layout">
                <ul class="trace-list">
                    <For each=move || traces.get() key=|t| (t.trace_id.clone(), t.spans, t.end_us) let:trace>
                        {
                            let id = trace.trace_id.clone();
                            let current = { let id = id.clone(); move || shown.get().as_deref() == Some(id.as_str()) };
                            let length = trace.end_us.map(|end| gantt::duration(end - trace.start_us)).unwrap_or_else(|| "running…".into());
                            view! {
                                <li class:current=current class:error=trace.error>
                                    <button class="trace-pick" on:click=move |_| { chosen.set(Some(id.clone())); selected_span.set(None); }>
                                        <span class="trace-name">{trace.name.clone()}</span>
                                        <span class="muted small">{format!("{} · {} spans · {}", crate::page::clock_time(trace.start_us / 1000), trace.spans, length)}</span>
                                    </button>
                                </li>
                            }
                        }
                    </For>
                    <Show when=move || traces.with(|t| t.is_empty())>
                        <li class="empty">"No traces yet: send a message and watch it appear here."</li>
                    </Show>
                </ul>
                <div class="trace-view">
                    {move || shown.get().map(|trace_id| view! { <Chart trace_id spans selected_span/> })}
                </div>
            </div>
        </section>
    }
}

#[component]
fn Chart(
    trace_id: String,
    spans: RwSignal<HashMap<String, SpanRecord>>,
    selected_span: RwSignal<Option<String>>,
) -> impl IntoView {
    let now = RwSignal::new(now_us());
    let bars = {
        let trace_id = trace_id.clone();
        Memo::new(move |_| {
            spans.with(|all| {
                all.values()
                    .filter(|s| s.trace_id == trace_id)
                    .map(|s| Bar {
                        span_id: s.span_id.clone(),
                        parent: s.parent_span_id.clone(),
                        name: display_name(s),
                        start_us: s.start_us,
                        end_us: s.end_us,
                        error: s.status == SpanStatus::Error,
                    })
                    .collect::<Vec<_>>()
            })
        })
    };
    let open = move || bars.with(|b| b.iter().any(|b| b.end_us.is_none()));
    // While something runs, the chart's "now" moves so open bars grow.
    let ticker = set_interval_with_handle(
        move || {
            if open() {
                now.set(now_us());
            }
        },
        std::time::Duration::from_millis(200),
    )
    .ok();
    on_cleanup(move || {
        if let Some(ticker) = ticker {
            ticker.clear();
        }
    });
    let rows = Memo::new(move |_| gantt::layout(&bars.get(), now.get()));
    // The visible window as fractions of the trace: [from, from + 1 / zoom].
    let zoom = RwSignal::new(1.0f64);
    let from = RwSignal::new(0.0f64);
    let bounds = move || {
        rows.with(|rows| {
            let start = rows.iter().map(|r| r.bar.start_us).min().unwrap_or(0);
            let end = rows.iter().map(|r| r.end_us).max().unwrap_or(start).max(start + 1);
            (start, end)
        })
    };
    let window = move || {
        let (start, end) = bounds();
        let length = (end - start) as f64;
        let visible = length / zoom.get();
        let first = start as f64 + from.get() * length;
        (first, visible)
    };
    let percent = move |us: i64| {
        let (first, visible) = window();
        (us as f64 - first) / visible * 100.0
    };
    let set_zoom = move |factor: f64, anchor: f64| {
        let old = zoom.get_untracked();
        let new = (old * factor).clamp(1.0, 5000.0);
        // Keep the point under `anchor` (0..1 of the visible width) where it is.
        let at = from.get_untracked() + anchor / old;
        from.set((at - anchor / new).clamp(0.0, 1.0 - 1.0 / new));
        zoom.set(new);
    };
    let pan = move |by: f64| {
        let z = zoom.get_untracked();
        from.update(|f| *f = (*f + by / z).clamp(0.0, 1.0 - 1.0 / z));
    };
    let on_wheel = move |ev: ev::WheelEvent| {
        ev.prevent_default();
        let width = event_target::<web_sys::Element>(&ev).get_bounding_client_rect().width().max(1.0);
        let anchor = (ev.offset_x() as f64 / width).clamp(0.0, 1.0);
        set_zoom(if ev.delta_y() < 0.0 { 1.25 } else { 0.8 }, anchor);
    };
    let height = move || rows.with(|r| (r.len() + 1) * ROW_HEIGHT);
    let axis = move || {
        let (first, visible) = window();
        let (start, _) = bounds();
        gantt::ticks(first as i64 - start, visible as i64, 5)
            .into_iter()
            .map(|offset| {
                let at = start + offset;
                let x = gantt::percent(percent(at));
                let label = format!("+{}", gantt::duration(at - start));
                view! {
                    <line x1=x.clone() x2=x.clone() y1="0" y2="100%" class="tick"/>
                    <text x=x dx="4" y="16" class="tick-label">{label}</text>
                }
            })
            .collect_view()
    };
    view! {
        <div class="chart-tools">
            <button class="small" on:click=move |_| set_zoom(1.5, 0.5) title="Zoom in">"+"</button>
            <button class="small" on:click=move |_| set_zoom(1.0 / 1.5, 0.5) title="Zoom out">"−"</button>
            <button class="small" on:click=move |_| pan(-0.25) title="Earlier">"←"</button>
            <button class="small" on:click=move |_| pan(0.25) title="Later">"→"</button>
            <button class="small" on:click=move |_| { zoom.set(1.0); from.set(0.0); }>"Fit"</button>
            <span class="muted small">{move || format!("{}× · wheel to zoom", zoom.get().round() as i64)}</span>
        </div>
        <div class="gantt">
            <svg class="gantt-labels" width="240" height=move || height().to_string()>
                {move || rows.get().into_iter().enumerate().map(|(i, row)| view! {
                    <text x=(8 + row.depth * 14).to_string() y=((i + 1) * ROW_HEIGHT + 17).to_string()
                        class:error=row.bar.error>{row.bar.name}</text>
                }).collect_view()}
            </svg>
            <svg class="gantt-bars" width="100%" height=move || height().to_string() on:wheel=on_wheel>
                {axis}
                {move || rows.get().into_iter().enumerate().map(|(i, row)| {
                    let left = percent(row.bar.start_us).max(-1.0);
                    let right = percent(row.end_us).min(101.0);
                    let width = (right - left).max(0.25);
                    let y = (i + 1) * ROW_HEIGHT + 5;
                    let id = row.bar.span_id.clone();
                    let selected = selected_span.get().as_deref() == Some(id.as_str());
                    let class = format!(
                        "bar kind-{}{}{}{}",
                        kind(&row.bar.name),
                        if row.bar.error { " error" } else { "" },
                        if row.bar.end_us.is_none() { " open" } else { "" },
                        if selected { " selected" } else { "" }
                    );
                    let label = gantt::duration(row.end_us - row.bar.start_us);
                    view! {
                        <g class="bar-group" on:click=move |_| selected_span.set(Some(id.clone()))>
                            <rect x=gantt::percent(left) y=y.to_string() width=gantt::percent(width) height="16" rx="3" class=class/>
                            <text x=gantt::percent((right + 0.4).min(92.0)) y=(y + 12).to_string() class="bar-label">{label}</text>
                        </g>
                    }
                }).collect_view()}
            </svg>
        </div>
        <Details spans selected_span/>
    }
}

/// The span's name with what it was about: the tool or the model.
fn display_name(span: &SpanRecord) -> String {
    let about = ["gen_ai.tool.name", "gen_ai.request.model", "messaging.system"]
        .iter()
        .find_map(|key| span.attributes.get(*key).and_then(|v| v.as_str()));
    match about {
        Some(about) => format!("{} {about}", span.name),
        None => span.name.clone(),
    }
}

/// The colour family of a span, by what it is.
fn kind(name: &str) -> &'static str {
    if name.starts_with("turn") {
        "turn"
    } else if name.starts_with("llm") || name.starts_with("chat") || name.starts_with("gen_ai") {
        "llm"
    } else if name.starts_with("approval") {
        "approval"
    } else if name.starts_with("mcp") || name.starts_with("tool") || name.starts_with("execute_tool") {
        "tool"
    } else if name.starts_with("webhook") || name.starts_with("channel") || name.starts_with("outbound") {
        "channel"
    } else {
        "other"
    }
}

#[component]
fn Details(spans: RwSignal<HashMap<String, SpanRecord>>, selected_span: RwSignal<Option<String>>) -> impl IntoView {
    move || {
        let id = selected_span.get()?;
        let span = spans.with(|all| all.get(&id).cloned())?;
        let length =
            span.end_us.map(|end| gantt::duration(end - span.start_us)).unwrap_or_else(|| "still running".into());
        let attributes: Vec<(String, String)> = span
            .attributes
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())))
            .collect();
        Some(view! {
            <div class="span-details card">
                <div class="server-head">
                    <h3>{span.name.clone()}</h3>
                    <span class=format!("rule {}", if span.status == SpanStatus::Error { "deny" } else { "allow" })>{span.status.as_str()}</span>
                    <span class="muted small">{format!("{length} · started {}", crate::page::clock_time(span.start_us / 1000))}</span>
                    <span class="spacer"></span>
                    <button class="ghost small" on:click=move |_| selected_span.set(None)>"Close"</button>
                </div>
                <table>
                    <tbody>
                        {attributes.into_iter().map(|(k, v)| view! { <tr><th>{k}</th><td><code>{v}</code></td></tr> }).collect_view()}
                    </tbody>
                </table>
            </div>
        })
    }
}
