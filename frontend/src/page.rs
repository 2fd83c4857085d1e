//! The browser page itself: its location (which route is shown), its title, and times as
//! the person reading it writes them. Every screen uses these; this module uses no screen,
//! so the screens and the app's root do not depend on each other in a loop.

use wasm_bindgen::JsValue;

use crate::route::Route;

/// Show `route` (a `location.hash` change, so Back works).
pub fn go(route: &Route) {
    if let Some(window) = web_sys::window() {
        let _ = window.location().set_hash(&route.hash());
    }
}

pub fn current_route() -> Route {
    let hash = web_sys::window().and_then(|w| w.location().hash().ok()).unwrap_or_default();
    Route::parse(&hash)
}

/// Set the page title as `WHAT — Pryx` (the desktop shell appends the agent's state).
pub fn set_title(what: &str) {
    if let Some(document) = web_sys::window().and_then(|w| w.document()) {
        document.set_title(&format!("{what} — Pryx"));
    }
}

/// A Unix-ms time as people read it: the time today, else the date and time.
pub fn clock_time(ms: i64) -> String {
    let date = js_sys::Date::new(&JsValue::from_f64(ms as f64));
    let today = js_sys::Date::new_0();
    let same_day = date.to_date_string() == today.to_date_string();
    let time: String = date.to_locale_time_string("default").into();
    // Drop the seconds: "14:03:27" → "14:03" (and "2:03:27 PM" → "2:03 PM").
    let time = match (time.rfind(':'), time.find(':')) {
        (Some(last), Some(first)) if last != first => format!("{}{}", &time[..last], &time[last + 3..]),
        _ => time,
    };
    if same_day {
        time
    } else {
        let day: String = date.to_locale_date_string("default", &JsValue::UNDEFINED).into();
        format!("{day} {time}")
    }
}
