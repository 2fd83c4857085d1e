//! A real browser for the Control Center tests: Debian's headless chromium, driven over
//! the Chrome DevTools Protocol on a WebSocket (the same protocol Playwright speaks).
//!
//! Only the handful of commands the tests need: navigate, evaluate JavaScript, real
//! keyboard input, screenshots; plus every exception, console error and CSP violation the
//! page reports, so a test can assert the page ran clean.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

/// How long any one wait may take (the tests' own patience; the benchmarks share this file).
const PATIENCE: Duration = Duration::from_secs(30);

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

/// A headless chromium with one page, closed when dropped.
pub struct Browser {
    _child: Child,
    _profile: tempfile::TempDir,
    to_browser: mpsc::UnboundedSender<String>,
    pending: Pending,
    next_id: AtomicU64,
    session: String,
    /// Exceptions, console errors and security (CSP) reports from the page.
    problems: Arc<Mutex<Vec<String>>>,
}

/// Where screenshots go for people to look at (CI keeps them).
pub fn artifacts_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("../artifacts/browser")
}

impl Browser {
    /// Start chromium (1280×800) and attach to its page.
    pub async fn launch() -> Browser {
        let profile = tempfile::Builder::new().prefix("pryx-chromium-").tempdir().expect("tempdir");
        let mut child = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                "--window-size=1280,800",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromium (apt install chromium; ./x setup for-tests does)");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let url = tokio::time::timeout(PATIENCE, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    return url.trim().to_owned();
                }
            }
            panic!("chromium exited without a DevTools address");
        })
        .await
        .expect("chromium did not start in time");
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

        let (socket, _) = tokio_tungstenite::connect_async(&url).await.expect("connect to chromium");
        let (mut sink, mut stream) = socket.split();
        let (to_browser, mut outbox) = mpsc::unbounded_channel::<String>();
        tokio::spawn(async move {
            while let Some(text) = outbox.recv().await {
                if sink.send(Message::text(text)).await.is_err() {
                    break;
                }
            }
        });
        let pending: Pending = Arc::default();
        let problems: Arc<Mutex<Vec<String>>> = Arc::default();
        let (replies, events) = (pending.clone(), problems.clone());
        tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                let Ok(text) = message.to_text() else { continue };
                let Ok(value) = serde_json::from_str::<Value>(text) else { continue };
                if let Some(id) = value["id"].as_u64() {
                    if let Some(reply) = replies.lock().unwrap().remove(&id) {
                        let _ = reply.send(value);
                    }
                } else if let Some(problem) = problem(&value) {
                    events.lock().unwrap().push(problem);
                }
            }
        });
        let mut browser = Browser {
            _child: child,
            _profile: profile,
            to_browser,
            pending,
            next_id: AtomicU64::new(1),
            session: String::new(),
            problems,
        };
        let targets = browser.command("Target.getTargets", json!({})).await;
        let page = targets["targetInfos"]
            .as_array()
            .and_then(|targets| targets.iter().find(|t| t["type"] == "page"))
            .and_then(|t| t["targetId"].as_str())
            .expect("a page target")
            .to_owned();
        let attached = browser.command("Target.attachToTarget", json!({"targetId": page, "flatten": true})).await;
        browser.session = attached["sessionId"].as_str().expect("a session id").to_owned();
        for domain in ["Page.enable", "Runtime.enable", "Log.enable"] {
            browser.command(domain, json!({})).await;
        }
        browser
    }

    /// Send one CDP command (to the page once attached) and wait for its result.
    pub async fn command(&self, method: &str, params: Value) -> Value {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut message = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            message["sessionId"] = json!(self.session);
        }
        let (reply, answer) = oneshot::channel();
        self.pending.lock().unwrap().insert(id, reply);
        self.to_browser.send(message.to_string()).expect("chromium connection");
        let value = tokio::time::timeout(PATIENCE, answer)
            .await
            .unwrap_or_else(|_| panic!("chromium did not answer {method}"))
            .expect("chromium connection");
        if let Some(error) = value.get("error") {
            panic!("{method} failed: {error}");
        }
        value["result"].clone()
    }

    /// Run `script` in every document before its own scripts (e.g. to sign a tab in).
    pub async fn before_every_page(&self, script: &str) {
        self.command("Page.addScriptToEvaluateOnNewDocument", json!({"source": script})).await;
    }

    /// Load `url` and wait until the document has loaded.
    pub async fn goto(&self, url: &str) {
        self.command("Page.navigate", json!({"url": url})).await;
        self.wait_for("document.readyState === 'complete'", "the page to load").await;
    }

    /// Evaluate `expression` in the page (promises are awaited); its JSON value.
    pub async fn eval(&self, expression: &str) -> Value {
        let result = self
            .command("Runtime.evaluate", json!({"expression": expression, "returnByValue": true, "awaitPromise": true}))
            .await;
        if let Some(details) = result.get("exceptionDetails") {
            panic!("{expression} threw: {}", details["exception"]["description"].as_str().unwrap_or("?"));
        }
        result["result"]["value"].clone()
    }

    /// Wait until `condition` (a JS expression) is truthy; its value.
    pub async fn wait_for(&self, condition: &str, what: &str) -> Value {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let value =
                self.eval(&format!("(() => {{ try {{ return {condition}; }} catch (e) {{ return null; }} }})()")).await;
            let truthy = match &value {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return value;
            }
            if tokio::time::Instant::now() >= deadline {
                // What the page looked like is the first thing to want when this fails in CI.
                let shot = self.screenshot("timed-out").await;
                let connections = self.eval("performance.getEntriesByName('pryx-connected').length").await;
                panic!(
                    "timed out waiting for {what} ({condition}); last value {value}; the page connected {connections} times; see {}",
                    shot.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The text of the first element matching `selector` (empty if none).
    pub async fn text(&self, selector: &str) -> String {
        let js = format!("document.querySelector({})?.innerText ?? ''", json!(selector));
        self.eval(&js).await.as_str().unwrap_or_default().to_owned()
    }

    /// Click the first element matching `selector` with a real mouse click at its centre.
    pub async fn click(&self, selector: &str) {
        // The point only counts when the element itself is on top there: a page still
        // laying out (a list arriving above a form) would otherwise take the click.
        let js = format!(
            "(() => {{ const e = document.querySelector({}); if (!e) return null; e.scrollIntoView({{block: 'center'}}); \
             const r = e.getBoundingClientRect(); const x = r.x + r.width / 2, y = r.y + r.height / 2; \
             const top = document.elementFromPoint(x, y); return top && (top === e || e.contains(top)) ? [x, y] : null; }})()",
            json!(selector)
        );
        let point = self.wait_for(&js, &format!("{selector} to be clickable")).await;
        let (x, y) = (point[0].as_f64().unwrap_or(0.0), point[1].as_f64().unwrap_or(0.0));
        for kind in ["mousePressed", "mouseReleased"] {
            self.command(
                "Input.dispatchMouseEvent",
                json!({"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1}),
            )
            .await;
        }
    }

    /// Click the first shown `selector` element whose text contains `text`.
    pub async fn click_text(&self, selector: &str, text: &str) {
        let js = format!(
            "(() => {{ const all = [...document.querySelectorAll({sel})].filter(e => e.getClientRects().length > 0); const i = all.findIndex(e => e.innerText.includes({text})); \
             if (i < 0) return false; document.querySelectorAll('[data-click]').forEach(e => e.removeAttribute('data-click')); \
             all[i].setAttribute('data-click', '1'); return true; }})()",
            sel = json!(selector),
            text = json!(text)
        );
        self.wait_for(&js, &format!("a {selector} saying {text:?}")).await;
        self.click("[data-click='1']").await;
    }

    /// Type `text` into the focused element, as an input method would.
    pub async fn type_text(&self, text: &str) {
        self.command("Input.insertText", json!({"text": text})).await;
    }

    /// Type `text` into the focused element and press Enter (send a message, submit a form).
    pub async fn type_line(&self, text: &str) {
        self.type_text(text).await;
        self.press("Enter", 0).await;
    }

    /// Click the field `selector` and type `text` into it (checked to have the focus first:
    /// typed text goes wherever the focus is).
    pub async fn fill(&self, selector: &str, text: &str) {
        let focused = format!("document.activeElement === document.querySelector({})", json!(selector));
        let deadline = tokio::time::Instant::now() + PATIENCE;
        // A list arriving above the field can move it between aiming and clicking: aim again.
        loop {
            self.click(selector).await;
            if self.eval(&focused).await == Value::Bool(true) {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{selector} never took the focus");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.type_text(text).await;
    }

    /// Press a key (`Enter`, `Escape`…), optionally with modifiers (1 Alt, 2 Ctrl, 8 Shift).
    pub async fn press(&self, key: &str, modifiers: u32) {
        let (code, vk, text) = match key {
            "Enter" => ("Enter", 13, "\r"),
            "Escape" => ("Escape", 27, ""),
            "k" => ("KeyK", 75, ""),
            other => panic!("no key mapping for {other}"),
        };
        let text = if modifiers & 2 != 0 { "" } else { text };
        let down = json!({"type": if text.is_empty() { "rawKeyDown" } else { "keyDown" }, "key": key, "code": code,
            "windowsVirtualKeyCode": vk, "text": text, "modifiers": modifiers});
        self.command("Input.dispatchKeyEvent", down).await;
        let up =
            json!({"type": "keyUp", "key": key, "code": code, "windowsVirtualKeyCode": vk, "modifiers": modifiers});
        self.command("Input.dispatchKeyEvent", up).await;
    }

    /// Save a screenshot as `artifacts/browser/NAME.png`; its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let shot = self.command("Page.captureScreenshot", json!({"format": "png"})).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("screenshot data"))
            .expect("base64 screenshot");
        let dir = artifacts_dir();
        std::fs::create_dir_all(&dir).expect("artifacts dir");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }

    /// The pixels of the first element matching `selector` as the screen shows them, in
    /// grey (0 black, 255 white), at one pixel per CSS pixel: (width, height, pixels).
    pub async fn capture(&self, selector: &str) -> (usize, usize, Vec<u8>) {
        let js = format!(
            "(() => {{ const e = document.querySelector({}); if (!e) return null; e.scrollIntoView({{block: 'center'}}); \
             const r = e.getBoundingClientRect(); return [r.x, r.y, r.width, r.height]; }})()",
            json!(selector)
        );
        let rect = self.wait_for(&js, &format!("{selector} to be shown")).await;
        let [x, y, width, height] = [0, 1, 2, 3].map(|i| rect[i].as_f64().unwrap_or(0.0));
        let clip = json!({"x": x, "y": y, "width": width, "height": height, "scale": 1});
        let shot = self.command("Page.captureScreenshot", json!({"format": "png", "clip": clip})).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("screenshot data"))
            .expect("base64 screenshot");
        let mut decoder = png::Decoder::new(std::io::Cursor::new(png));
        decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
        let mut reader = decoder.read_info().expect("a PNG");
        let mut buffer = vec![0; reader.output_buffer_size().expect("a PNG's size")];
        let frame = reader.next_frame(&mut buffer).expect("PNG pixels");
        let channels = frame.color_type.samples();
        let grey =
            buffer[..frame.buffer_size()]
                .chunks(channels)
                .map(|p| {
                    if channels >= 3 {
                        ((u32::from(p[0]) + u32::from(p[1]) + u32::from(p[2])) / 3) as u8
                    } else {
                        p[0]
                    }
                })
                .collect();
        (frame.width as usize, frame.height as usize, grey)
    }

    /// What went wrong in the page so far (exceptions, console errors, CSP reports).
    pub fn problems(&self) -> Vec<String> {
        self.problems.lock().unwrap().clone()
    }
}

/// A CDP event worth failing a test over, in words.
fn problem(event: &Value) -> Option<String> {
    let params = &event["params"];
    match event["method"].as_str()? {
        "Runtime.exceptionThrown" => Some(format!(
            "exception: {}",
            params["exceptionDetails"]["exception"]["description"]
                .as_str()
                .or(params["exceptionDetails"]["text"].as_str())
                .unwrap_or("?")
        )),
        "Runtime.consoleAPICalled" if params["type"] == "error" => {
            Some(format!("console.error: {}", params["args"][0]["value"].as_str().unwrap_or("?")))
        }
        "Log.entryAdded" if params["entry"]["level"] == "error" => {
            Some(format!("{}: {}", params["entry"]["source"], params["entry"]["text"]))
        }
        _ => None,
    }
}
