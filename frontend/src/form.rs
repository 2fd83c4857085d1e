//! Text-field forms, one way for every screen that edits settings (the model, Telegram,
//! WhatsApp, the agent's settings): a list of fields, their values in signals, secrets as
//! password inputs that say when a value is already kept in the keychain.
//!
//! Built from data rather than one `view!` per form: each distinct view adds to the
//! page's download, and these forms differ only in their fields.

use leptos::prelude::*;

/// One field: label, input name (the tests find fields by it), whether it is a secret
/// (empty keeps the kept one), placeholder.
pub type Field = (&'static str, &'static str, bool, &'static str);

/// The most fields a form has.
pub const MAX_FIELDS: usize = 5;

/// Values of a form's fields, by position.
pub type Values = [RwSignal<String>; MAX_FIELDS];

pub fn values() -> Values {
    std::array::from_fn(|_| RwSignal::new(String::new()))
}

/// The value of field `i`, trimmed, `None` when empty.
pub fn value(values: &Values, i: usize) -> Option<String> {
    Some(values[i].get_untracked().trim().to_owned()).filter(|v| !v.is_empty())
}

/// Forget what secret fields hold (once the agent kept them).
pub fn clear_secrets(fields: &[Field], values: &Values) {
    for (field, value) in fields.iter().zip(values) {
        if field.2 {
            value.set(String::new());
        }
    }
}

/// The labelled inputs of `fields`; `kept` says whether secrets are already in the keychain.
pub fn inputs(fields: &'static [Field], values: Values, kept: Signal<bool>) -> impl IntoView {
    fields
        .iter()
        .enumerate()
        .map(move |(i, &(label, name, secret, hint))| {
            let placeholder = move || if secret && kept.get() { "kept in the keychain (type to replace)" } else { hint };
            view! {
                <label><span>{label}</span>
                    <input name=name type=if secret { "password" } else { "text" } autocomplete="off" placeholder=placeholder
                        prop:value=move || values[i].get() on:input=move |ev| values[i].set(event_target_value(&ev))/></label>
            }
        })
        .collect_view()
}
