//! Write seam rule packs in Rust.
//!
//! A mapping pack is a type that implements [`Mapper`], exported with
//! [`export_mapper!`], built for `wasm32-wasip2`:
//!
//! ```ignore
//! use seam_guest::*;
//!
//! struct Echo;
//! impl Mapper for Echo {
//!     fn map(change: &Change) -> Result<Vec<Action>, String> {
//!         let subject = change.text("Subject").unwrap_or_default();
//!         Ok(vec![Action::update_linked([field("short_description", subject)])])
//!     }
//! }
//! export_mapper!(Echo);
//! ```
//!
//! Packs never do I/O: they return actions, and the host performs them after
//! checking them against the ownership map.

/// The raw bindings generated from `wit/` (world `mapping`).
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "mapping",
        pub_export_macro: true,
        default_bindings_module: "seam_guest::bindings",
        export_macro_name: "export",
    });
}

pub use bindings::seam::sync::types::{
    Action, Change, ChangeKind, Create, Field, JournalEntry, JournalKind, RecordRef, SlackPost,
    System, Target, Update, Value,
};
pub use bindings::seam::sync::lookup::LookupError;

/// A field-mapping pack: one change in, the actions that carry it across out.
pub trait Mapper {
    /// An `Err` is a permanent failure: the host dead-letters the event with this message.
    fn map(change: &Change) -> Result<Vec<Action>, String>;
}

/// Export a [`Mapper`] implementation as the component's `seam:sync/mapper`.
#[macro_export]
macro_rules! export_mapper {
    ($ty:ident) => {
        impl $crate::bindings::exports::seam::sync::mapper::Guest for $ty {
            fn map_change(change: $crate::Change) -> ::core::result::Result<::std::vec::Vec<$crate::Action>, ::std::string::String> {
                <$ty as $crate::Mapper>::map(&change)
            }
        }
        $crate::bindings::export!($ty with_types_in $crate::bindings);
    };
}

/// A field with a value; `field("impact", "1")`, `field("Amount", 3.5)`.
pub fn field(name: impl Into<String>, value: impl Into<Value>) -> Field {
    Field { name: name.into(), value: value.into() }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Text(s.to_string())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Text(s)
    }
}
impl From<&String> for Value {
    fn from(s: &String) -> Self {
        Value::Text(s.clone())
    }
}
impl From<f64> for Value {
    fn from(n: f64) -> Self {
        Value::Number(n)
    }
}
impl From<i64> for Value {
    fn from(n: i64) -> Self {
        Value::Number(n as f64)
    }
}
impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Boolean(b)
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

impl Value {
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }
    /// Numbers, and text that parses as a number (ServiceNow sends numbers as text).
    pub fn as_number(&self) -> Option<f64> {
        match self {
            Value::Number(n) => Some(*n),
            Value::Text(s) => s.trim().parse().ok(),
            _ => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Boolean(b) => Some(*b),
            Value::Text(s) => match s.as_str() {
                "true" => Some(true),
                "false" => Some(false),
                _ => None,
            },
            _ => None,
        }
    }
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
}

fn find<'a>(fields: &'a [Field], name: &str) -> Option<&'a Value> {
    fields.iter().find(|f| f.name == name).map(|f| &f.value)
}

impl Change {
    /// The field's value after the change (from the snapshot, falling back to `changed`).
    pub fn get(&self, name: &str) -> Option<&Value> {
        find(&self.snapshot, name).or_else(|| find(&self.changed, name))
    }
    /// The field's text after the change; `None` when absent, null or not text.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(Value::as_text)
    }
    pub fn number(&self, name: &str) -> Option<f64> {
        self.get(name).and_then(Value::as_number)
    }
    /// The new value if this change touched the field.
    pub fn changed_value(&self, name: &str) -> Option<&Value> {
        find(&self.changed, name)
    }
    /// Did this change touch the field?
    pub fn changed(&self, name: &str) -> bool {
        self.changed_value(name).is_some()
    }
    /// Is the change about this system's object (`is(System::Salesforce, "Case")`)?
    pub fn is(&self, system: System, object: &str) -> bool {
        self.source.system == system && self.source.object.eq_ignore_ascii_case(object)
    }
}

impl Action {
    /// Set fields on the linked record on the other side.
    pub fn update_linked(fields: impl IntoIterator<Item = Field>) -> Action {
        Action::Update(Update { target: Target::Linked, fields: fields.into_iter().collect() })
    }
    /// Set fields on any record.
    pub fn update(target: Target, fields: impl IntoIterator<Item = Field>) -> Action {
        Action::Update(Update { target, fields: fields.into_iter().collect() })
    }
    /// Append an internal note to the linked record.
    pub fn work_note_linked(text: impl Into<String>) -> Action {
        Action::AppendJournal(JournalEntry { target: Target::Linked, kind: JournalKind::WorkNote, text: text.into() })
    }
    /// Append a customer-visible comment to the linked record.
    pub fn comment_linked(text: impl Into<String>) -> Action {
        Action::AppendJournal(JournalEntry { target: Target::Linked, kind: JournalKind::Comment, text: text.into() })
    }
    /// Create a record and link it to the change's source.
    pub fn create_linked(system: System, object: impl Into<String>, fields: impl IntoIterator<Item = Field>) -> Action {
        Action::Create(Create { system, object: object.into(), fields: fields.into_iter().collect(), link_to_source: true })
    }
    /// Create an unlinked record (a Task, a note...).
    pub fn create(system: System, object: impl Into<String>, fields: impl IntoIterator<Item = Field>) -> Action {
        Action::Create(Create { system, object: object.into(), fields: fields.into_iter().collect(), link_to_source: false })
    }
    /// Post to a Slack channel, creating it first when `create_channel` is set.
    pub fn slack(channel: impl Into<String>, create_channel: bool, text: impl Into<String>) -> Action {
        Action::PostSlack(SlackPost { channel: channel.into(), create_channel, text: text.into() })
    }
}

/// Logging through the host, tagged with this pack's name.
pub mod log {
    use super::bindings::seam::sync::log::{log, Level};
    pub fn debug(message: &str) {
        log(Level::Debug, message)
    }
    pub fn info(message: &str) {
        log(Level::Info, message)
    }
    pub fn warn(message: &str) {
        log(Level::Warn, message)
    }
    pub fn error(message: &str) {
        log(Level::Error, message)
    }
}

/// Read fields of a record. Only what the pack's manifest was granted is readable.
pub fn lookup(record: &RecordRef, fields: &[&str]) -> Result<Vec<Field>, LookupError> {
    let names: Vec<String> = fields.iter().map(|f| f.to_string()).collect();
    bindings::seam::sync::lookup::get(record, &names)
}
