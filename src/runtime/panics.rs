//! Panic capture: a process-wide hook that records each panic's message and backtrace on
//! the thread it happened on, so whoever catches the unwind (the turn runner or the
//! supervisor) can store a full crash record instead of a bare "panicked".

use std::backtrace::Backtrace;
use std::cell::RefCell;
use std::sync::Once;

thread_local! {
    static LAST_PANIC: RefCell<Option<(String, String)>> = const { RefCell::new(None) };
}

/// Install the hook once per process. Panics are logged through `tracing`, not printed raw.
pub fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let message = match info.payload().downcast_ref::<&str>() {
                Some(s) => (*s).to_owned(),
                None => info.payload().downcast_ref::<String>().cloned().unwrap_or_else(|| "non-string panic".into()),
            };
            let location = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
            let message = format!("{message}{location}");
            let backtrace = Backtrace::force_capture().to_string();
            tracing::error!(thread = std::thread::current().name().unwrap_or("?"), "panic: {message}");
            LAST_PANIC.with(|last| *last.borrow_mut() = Some((message, backtrace)));
        }));
    });
}

/// Message and backtrace of the panic whose payload was just caught on this thread.
pub fn describe(payload: Box<dyn std::any::Any + Send>) -> (String, String) {
    let recorded = LAST_PANIC.with(|last| last.borrow_mut().take());
    match recorded {
        Some(found) => found,
        None => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic".into());
            (message, "(no backtrace captured)".into())
        }
    }
}
