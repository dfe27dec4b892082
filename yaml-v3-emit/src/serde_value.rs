//! [`Tree`] for `serde_yaml_ng::Value` (feature `serde_yaml_ng`): tags are dropped, as Go's
//! encoder does for values it marshals from plain Go types.

use std::borrow::Cow;

use serde_yaml_ng::Value;

use crate::{Key, MapItem, SeqItem, Tree, View};

type EntryFn = for<'a> fn((&'a Value, &'a Value)) -> MapItem<'a, Value>;
type ItemFn = for<'a> fn(&'a Value) -> SeqItem<'a, Value>;

fn entry<'a>((k, v): (&'a Value, &'a Value)) -> MapItem<'a, Value> {
    let key = match k {
        Value::String(s) => Key::Str(s),
        Value::Tagged(t) => match &t.value {
            Value::String(s) => Key::Str(s),
            other => Key::Raw(Cow::Owned(inline(other))),
        },
        other => Key::Raw(Cow::Owned(inline(other))),
    };
    MapItem::Entry(key, v)
}

fn item(v: &Value) -> SeqItem<'_, Value> {
    SeqItem::Node(v)
}

/// A non-string key's text.
fn inline(v: &Value) -> String {
    match v {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Mapping(_) => "{}".to_owned(),
        Value::Sequence(_) => "[]".to_owned(),
        Value::Tagged(t) => inline(&t.value),
    }
}

impl Tree for Value {
    type Entries<'a> = std::iter::Map<serde_yaml_ng::mapping::Iter<'a>, EntryFn>;
    type Items<'a> = std::iter::Map<std::slice::Iter<'a, Value>, ItemFn>;

    fn view(&self) -> View<'_, Self> {
        match self {
            Value::Mapping(m) => View::Map(m.iter().map(entry as EntryFn)),
            Value::Sequence(s) => View::Seq(s.iter().map(item as ItemFn)),
            Value::String(s) => View::Str(s),
            Value::Tagged(t) => t.value.view(),
            Value::Null => View::Raw(Cow::Borrowed("null")),
            Value::Bool(b) => View::Raw(Cow::Borrowed(if *b { "true" } else { "false" })),
            Value::Number(n) => View::Raw(Cow::Owned(n.to_string())),
        }
    }
}
