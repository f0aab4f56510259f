//! An item as written in YAML, before its kind's parameters are checked.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{Direction, ItemDef, KindDef, OptionDef};

/// The item as written: every parameter of every kind is accepted here and
/// [`ItemDef`]'s conversion rejects the ones that do not belong to the kind
/// (serde cannot combine `flatten` with `deny_unknown_fields`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawItem {
    id: String,
    code: String,
    #[serde(default)]
    text: String,
    kind: KindName,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    relevant: Option<String>,
    #[serde(default)]
    constraint: Option<String>,
    #[serde(default)]
    constraint_message: Option<String>,
    #[serde(default)]
    constraint_hard: bool,
    missing_numbers: Option<Vec<String>>,
    min: Option<Number>,
    max: Option<Number>,
    labels: Option<BTreeMap<i64, String>>,
    direction: Option<Direction>,
    box_size: Option<u32>,
    options: Option<Vec<OptionDef>>,
    ranked: Option<bool>,
    max_picks: Option<u32>,
}

/// A `min` or `max` as written: a whole number or not (the kind decides
/// which it must be).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Number {
    Int(i64),
    Float(f64),
}

impl Number {
    fn as_f64(self) -> f64 {
        match self {
            Number::Int(i) => i as f64,
            Number::Float(f) => f,
        }
    }
}

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Number, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Number;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a number")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Number, E> {
                Ok(Number::Int(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Number, E> {
                i64::try_from(v).map(Number::Int).map_err(|_| E::custom("number out of range"))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Number, E> {
                Ok(Number::Float(v))
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum KindName {
    Scale,
    YesNo,
    YesNoNa,
    SingleChoice,
    MultiSelect,
    Count,
    Number,
    Text,
}

impl TryFrom<RawItem> for ItemDef {
    type Error = String;

    fn try_from(r: RawItem) -> Result<Self, String> {
        let id = r.id.clone();
        let mut unused: Vec<&str> = Vec::new();
        let int = |n: &Option<Number>, what: &str| -> Result<Option<i64>, String> {
            match n {
                None => Ok(None),
                Some(Number::Int(i)) => Ok(Some(*i)),
                Some(Number::Float(_)) => Err(format!("item `{id}`: `{what}` must be a whole number")),
            }
        };
        let float = |n: &Option<Number>| n.map(Number::as_f64);
        let need = |v: Option<i64>, what: &str| v.ok_or_else(|| format!("item `{id}`: `{what}` is required"));
        let kind = match r.kind {
            KindName::Scale => KindDef::Scale {
                min: need(int(&r.min, "min")?, "min")?,
                max: need(int(&r.max, "max")?, "max")?,
                labels: r.labels.clone().unwrap_or_default(),
                direction: r.direction.unwrap_or_default(),
                box_size: r.box_size,
            },
            KindName::YesNo => KindDef::YesNo,
            KindName::YesNoNa => KindDef::YesNoNa,
            KindName::SingleChoice => KindDef::SingleChoice {
                options: r.options.clone().ok_or_else(|| format!("item `{id}`: `options` is required"))?,
            },
            KindName::MultiSelect => KindDef::MultiSelect {
                options: r.options.clone().ok_or_else(|| format!("item `{id}`: `options` is required"))?,
                ranked: r.ranked.unwrap_or(false),
                max_picks: r.max_picks,
            },
            KindName::Count => KindDef::Count {
                min: int(&r.min, "min")?.unwrap_or(0),
                max: need(int(&r.max, "max")?, "max")?,
            },
            KindName::Number => KindDef::Number { min: float(&r.min), max: float(&r.max) },
            KindName::Text => KindDef::Text,
        };
        let allowed: &[&str] = match r.kind {
            KindName::Scale => &["min", "max", "labels", "direction", "box_size"],
            KindName::SingleChoice => &["options"],
            KindName::MultiSelect => &["options", "ranked", "max_picks"],
            KindName::Count | KindName::Number => &["min", "max", "missing_numbers"],
            KindName::YesNo | KindName::YesNoNa | KindName::Text => &[],
        };
        let present = [
            ("min", r.min.is_some()),
            ("max", r.max.is_some()),
            ("labels", r.labels.is_some()),
            ("direction", r.direction.is_some()),
            ("box_size", r.box_size.is_some()),
            ("options", r.options.is_some()),
            ("ranked", r.ranked.is_some()),
            ("max_picks", r.max_picks.is_some()),
            ("missing_numbers", r.missing_numbers.is_some()),
        ];
        for (key, is_set) in present {
            if is_set && !allowed.contains(&key) {
                unused.push(key);
            }
        }
        if r.constraint_hard && r.constraint.is_none() {
            return Err(format!("item `{id}`: `constraint_hard` needs a `constraint`"));
        }
        if !unused.is_empty() {
            return Err(format!(
                "item `{id}`: `{}` does not apply to kind `{}`",
                unused.join("`, `"),
                kind.name()
            ));
        }
        Ok(ItemDef {
            id: r.id,
            code: r.code,
            text: r.text,
            kind,
            required: r.required,
            relevant: r.relevant,
            constraint: r.constraint,
            constraint_message: r.constraint_message,
            constraint_hard: r.constraint_hard,
            missing_numbers: r.missing_numbers.unwrap_or_default(),
        })
    }
}
