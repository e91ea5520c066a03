//! The catalogue of IT policy rules and the BES 5 preset policies: pure data (each rule's
//! name, type, limits, description and default; each preset's overrides) and the logic on it
//! (validating a value, resolving a preset or an administrator's values into the proto
//! [`PolicyRule`] list of an `ItPolicy`, and the difference between two policies).
//!
//! Owns: what a rule may hold and what the presets contain, for the policy service. Must not
//! touch: any I/O (no database, no network, no files) and the signing key; storing, signing
//! and sending policies is the rest of [`crate::policy`]'s.

use std::borrow::Cow;
use std::fmt;

use bramble_proto::schema::{PolicyRule, policy_rule::Value};

/// What a rule holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleKind {
    /// On or off.
    Flag,
    /// A whole number from `min` to `max`, both included.
    Number {
        /// The smallest value allowed.
        min: i64,
        /// The largest value allowed.
        max: i64,
    },
    /// One of a few texts.
    Text {
        /// The texts allowed, exactly as written.
        allowed: &'static [&'static str],
    },
}

impl RuleKind {
    /// What this kind takes, in an administrator's words ("on or off", "a number", "a text").
    pub fn what(&self) -> &'static str {
        match self {
            Self::Flag => "on or off",
            Self::Number { .. } => "a number",
            Self::Text { .. } => "a text",
        }
    }
}

/// A rule's value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RuleValue {
    /// On (`true`) or off.
    Flag(bool),
    /// A number.
    Number(i64),
    /// A text.
    Text(Cow<'static, str>),
}

impl RuleValue {
    /// A text value.
    pub fn text(s: impl Into<Cow<'static, str>>) -> Self {
        Self::Text(s.into())
    }

    /// What this value is, in an administrator's words ("on or off", "a number", "a text").
    pub fn what(&self) -> &'static str {
        match self {
            Self::Flag(_) => "on or off",
            Self::Number(_) => "a number",
            Self::Text(_) => "a text",
        }
    }

    /// The value of a proto rule.
    pub fn from_proto(value: &Value) -> Self {
        match value {
            Value::Flag(b) => Self::Flag(*b),
            Value::Number(n) => Self::Number(*n),
            Value::Text(t) => Self::Text(Cow::Owned(t.clone())),
        }
    }

    /// The proto value.
    pub fn to_proto(&self) -> Value {
        match self {
            Self::Flag(b) => Value::Flag(*b),
            Self::Number(n) => Value::Number(*n),
            Self::Text(t) => Value::Text(t.clone().into_owned()),
        }
    }
}

impl From<&Value> for RuleValue {
    fn from(value: &Value) -> Self {
        Self::from_proto(value)
    }
}

impl From<&RuleValue> for Value {
    fn from(value: &RuleValue) -> Self {
        value.to_proto()
    }
}

/// "on"/"off", the number, or the text as it is.
impl fmt::Display for RuleValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Flag(true) => f.write_str("on"),
            Self::Flag(false) => f.write_str("off"),
            Self::Number(n) => write!(f, "{n}"),
            Self::Text(t) => f.write_str(t),
        }
    }
}

/// One rule of the catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSpec {
    /// The stable name (snake_case), as sent to devices in [`PolicyRule::name`].
    pub name: &'static str,
    /// What it holds.
    pub kind: RuleKind,
    /// What it does, in an administrator's words.
    pub description: &'static str,
    /// Its value when a policy does not set it.
    pub default: RuleValue,
}

/// The texts the `password_complexity` rule allows, weakest first.
pub const COMPLEXITY: &[&str] = &["none", "letters and digits", "letters, digits and symbols"];

const fn flag(name: &'static str, default: bool, description: &'static str) -> RuleSpec {
    RuleSpec {
        name,
        kind: RuleKind::Flag,
        description,
        default: RuleValue::Flag(default),
    }
}

const fn number(
    name: &'static str,
    min: i64,
    max: i64,
    default: i64,
    description: &'static str,
) -> RuleSpec {
    RuleSpec {
        name,
        kind: RuleKind::Number { min, max },
        description,
        default: RuleValue::Number(default),
    }
}

static CATALOGUE: [RuleSpec; 10] = [
    flag(
        "password_required",
        false,
        "The user must set a device password before using the device.",
    ),
    number(
        "password_min_length",
        4,
        14,
        4,
        "The fewest characters a device password may have (when a password is required).",
    ),
    RuleSpec {
        name: "password_complexity",
        kind: RuleKind::Text {
            allowed: COMPLEXITY,
        },
        description: "What a device password must contain: \"none\" (anything), \"letters and \
                      digits\" (at least one of each), or \"letters, digits and symbols\" (at \
                      least one of each).",
        default: RuleValue::Text(Cow::Borrowed("none")),
    },
    number(
        "max_password_attempts",
        3,
        10,
        10,
        "How many wrong passwords in a row the device accepts before it wipes itself (all \
         data, including mail, is erased).",
    ),
    number(
        "inactivity_lock_minutes",
        0,
        60,
        0,
        "After how many idle minutes the device locks and asks for its password (0: never).",
    ),
    flag(
        "disable_camera",
        false,
        "Turn the device's camera off (the user cannot take photos or videos).",
    ),
    flag(
        "disable_bluetooth",
        false,
        "Turn Bluetooth off (no headsets, car kits or file transfers).",
    ),
    flag(
        "allow_third_party_apps",
        true,
        "The user may install and run applications that the organization did not provide.",
    ),
    number(
        "max_attachment_kb",
        0,
        102_400,
        25_600,
        "The largest attachment, in kilobytes (1 KB = 1024 bytes), the server sends to the \
         device (0: no attachments).",
    ),
    flag(
        "content_protection",
        false,
        "Encrypt the mail, contacts, calendar and other data stored on the device while it is \
         locked.",
    ),
];

/// Every rule, in catalogue order (the order of a resolved policy's rules).
pub fn catalogue() -> &'static [RuleSpec] {
    &CATALOGUE
}

/// The rule with this name.
pub fn spec(name: &str) -> Option<&'static RuleSpec> {
    CATALOGUE.iter().find(|s| s.name == name)
}

/// One of BES 5's preset IT policies: the rules it sets differently from (or explicitly to)
/// the catalogue's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preset {
    /// BES 5's name for it.
    pub name: &'static str,
    /// What it is for, in an administrator's words.
    pub description: &'static str,
    /// The rules it sets; every other rule keeps its default.
    pub overrides: &'static [(&'static str, RuleValue)],
}

impl Preset {
    /// The preset's full rule list (defaults filled in, catalogue order), for an `ItPolicy`.
    pub fn rules(&self) -> Vec<PolicyRule> {
        resolve(self.overrides)
    }
}

const fn on(name: &'static str) -> (&'static str, RuleValue) {
    (name, RuleValue::Flag(true))
}

const fn off(name: &'static str) -> (&'static str, RuleValue) {
    (name, RuleValue::Flag(false))
}

const fn num(name: &'static str, n: i64) -> (&'static str, RuleValue) {
    (name, RuleValue::Number(n))
}

const fn txt(name: &'static str, t: &'static str) -> (&'static str, RuleValue) {
    (name, RuleValue::Text(Cow::Borrowed(t)))
}

static PRESETS: [Preset; 6] = [
    Preset {
        name: "Default",
        description: "The catalogue's defaults: no password, nothing disabled. For trials; \
                      choose a stronger preset for production devices.",
        overrides: &[],
    },
    Preset {
        name: "Individual-Liable Devices",
        description: "For devices the user owns: the organization's mail sits behind a \
                      password that locks after 30 idle minutes, but nothing of the owner's \
                      (camera, Bluetooth, their own applications) is disabled.",
        overrides: &[
            on("password_required"),
            num("password_min_length", 4),
            num("inactivity_lock_minutes", 30),
        ],
    },
    Preset {
        name: "Basic Password Security",
        description: "A password of at least 4 characters, of any kind.",
        overrides: &[on("password_required"), num("password_min_length", 4)],
    },
    Preset {
        name: "Medium Password Security",
        description: "A password of at least 6 letters and digits; the device locks after 15 \
                      idle minutes and wipes itself after 10 wrong passwords.",
        overrides: &[
            on("password_required"),
            num("password_min_length", 6),
            txt("password_complexity", "letters and digits"),
            num("max_password_attempts", 10),
            num("inactivity_lock_minutes", 15),
        ],
    },
    Preset {
        name: "Medium Security with No 3rd Party Applications",
        description: "Medium Password Security, and only the organization's applications may \
                      be installed or run.",
        overrides: &[
            on("password_required"),
            num("password_min_length", 6),
            txt("password_complexity", "letters and digits"),
            num("max_password_attempts", 10),
            num("inactivity_lock_minutes", 15),
            off("allow_third_party_apps"),
        ],
    },
    Preset {
        name: "Advanced Security",
        description: "A password of at least 8 letters, digits and symbols; the device locks \
                      after 5 idle minutes, wipes itself after 5 wrong passwords, encrypts its \
                      data while locked and has no camera. Bluetooth stays on (hands-free \
                      calling is often required by law while driving); combine with \"No 3rd \
                      Party Applications\" rules as needed.",
        overrides: &[
            on("password_required"),
            num("password_min_length", 8),
            txt("password_complexity", "letters, digits and symbols"),
            num("max_password_attempts", 5),
            num("inactivity_lock_minutes", 5),
            on("content_protection"),
            on("disable_camera"),
        ],
    },
];

/// BES 5's six preset policies, Default first.
pub fn presets() -> &'static [Preset] {
    &PRESETS
}

/// The preset with this name, ignoring case ("advanced security" finds "Advanced Security").
pub fn preset(name: &str) -> Option<&'static Preset> {
    let name = name.trim();
    PRESETS.iter().find(|p| p.name.eq_ignore_ascii_case(name))
}

/// Why a rule's value is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// No rule has this name.
    #[error("there is no IT policy rule called {name:?}")]
    Unknown {
        /// The name given.
        name: String,
    },
    /// The value is of the wrong type.
    #[error("{name} takes {expected}, not {got}")]
    WrongType {
        /// The rule.
        name: &'static str,
        /// What it takes ("on or off", "a number", "a text").
        expected: &'static str,
        /// What was given.
        got: &'static str,
    },
    /// The number is out of the rule's range.
    #[error("{name} must be from {min} to {max}; {value} is out of range")]
    OutOfRange {
        /// The rule.
        name: &'static str,
        /// The number given.
        value: i64,
        /// The smallest allowed.
        min: i64,
        /// The largest allowed.
        max: i64,
    },
    /// The text is not one the rule allows.
    #[error("{name} must be one of {}; {value:?} is not", quoted(allowed))]
    NotAllowed {
        /// The rule.
        name: &'static str,
        /// The text given.
        value: String,
        /// The texts allowed.
        allowed: &'static [&'static str],
    },
}

fn quoted(allowed: &[&str]) -> String {
    allowed
        .iter()
        .map(|a| format!("{a:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether `value` is one the rule `name` accepts.
///
/// # Errors
/// A [`RuleError`] saying what is wrong: an unknown rule, a value of the wrong type, a number
/// out of range, a text not allowed.
pub fn validate(name: &str, value: &RuleValue) -> Result<(), RuleError> {
    let spec = spec(name).ok_or_else(|| RuleError::Unknown {
        name: name.to_owned(),
    })?;
    match (&spec.kind, value) {
        (RuleKind::Flag, RuleValue::Flag(_)) => Ok(()),
        (RuleKind::Number { min, max }, RuleValue::Number(n)) => {
            if (*min..=*max).contains(n) {
                Ok(())
            } else {
                Err(RuleError::OutOfRange {
                    name: spec.name,
                    value: *n,
                    min: *min,
                    max: *max,
                })
            }
        }
        (RuleKind::Text { allowed }, RuleValue::Text(t)) => {
            if allowed.contains(&t.as_ref()) {
                Ok(())
            } else {
                Err(RuleError::NotAllowed {
                    name: spec.name,
                    value: t.clone().into_owned(),
                    allowed,
                })
            }
        }
        (kind, value) => Err(RuleError::WrongType {
            name: spec.name,
            expected: kind.what(),
            got: value.what(),
        }),
    }
}

/// The value an administrator typed for rule `name`, checked: "on"/"off" (also "true"/"false",
/// "yes"/"no") for a flag, a whole number, or one of the allowed texts (any case).
///
/// # Errors
/// A [`RuleError`]: an unknown rule, text that is not of the rule's type (reported as
/// [`RuleError::WrongType`]), a number out of range, a text not allowed.
pub fn parse(name: &str, text: &str) -> Result<RuleValue, RuleError> {
    let spec = spec(name.trim()).ok_or_else(|| RuleError::Unknown {
        name: name.trim().to_owned(),
    })?;
    let t = text.trim();
    let value = match spec.kind {
        RuleKind::Flag => match t.to_ascii_lowercase().as_str() {
            "on" | "true" | "yes" | "1" => RuleValue::Flag(true),
            "off" | "false" | "no" | "0" => RuleValue::Flag(false),
            _ => {
                return Err(RuleError::WrongType {
                    name: spec.name,
                    expected: spec.kind.what(),
                    got: "a text",
                });
            }
        },
        RuleKind::Number { .. } => match t.parse::<i64>() {
            Ok(n) => RuleValue::Number(n),
            Err(_) => {
                return Err(RuleError::WrongType {
                    name: spec.name,
                    expected: spec.kind.what(),
                    got: "a text",
                });
            }
        },
        RuleKind::Text { allowed } => match allowed.iter().find(|a| a.eq_ignore_ascii_case(t)) {
            Some(a) => RuleValue::Text(Cow::Borrowed(a)),
            None => RuleValue::Text(Cow::Owned(t.to_owned())),
        },
    };
    validate(spec.name, &value)?;
    Ok(value)
}

/// What a rule takes, in an administrator's words: "on or off", "a number from 4 to 14",
/// "one of \"none\", \"letters and digits\", …".
pub fn takes(spec: &RuleSpec) -> String {
    match spec.kind {
        RuleKind::Flag => "on or off".to_owned(),
        RuleKind::Number { min, max } => format!("a number from {min} to {max}"),
        RuleKind::Text { allowed } => format!("one of {}", quoted(allowed)),
    }
}

/// A rule list as the configuration database keeps it: a JSON object from rule name to a
/// JSON boolean, number or string, in the list's order.
pub fn to_json(rules: &[PolicyRule]) -> String {
    let map: serde_json::Map<String, serde_json::Value> = rules
        .iter()
        .filter_map(|r| {
            let v = match r.value.as_ref()? {
                Value::Flag(b) => serde_json::Value::Bool(*b),
                Value::Number(n) => serde_json::Value::from(*n),
                Value::Text(t) => serde_json::Value::String(t.clone()),
            };
            Some((r.name.clone(), v))
        })
        .collect();
    serde_json::Value::Object(map).to_string()
}

/// A rule list read back from [`to_json`]'s form, completed to the whole catalogue (a rule
/// the catalogue gained since the version was stored gets its default; one it lost is
/// dropped), in catalogue order.
///
/// # Errors
/// A sentence when the text is not such an object.
pub fn from_json(text: &str) -> Result<Vec<PolicyRule>, String> {
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text)
        .map_err(|e| format!("a stored IT policy version is damaged: {e}"))?;
    let mut values = Vec::new();
    for (name, v) in &map {
        let value = match v {
            serde_json::Value::Bool(b) => RuleValue::Flag(*b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(n) => RuleValue::Number(n),
                None => continue,
            },
            serde_json::Value::String(s) => RuleValue::Text(Cow::Owned(s.clone())),
            _ => continue,
        };
        values.push((name.as_str(), value));
    }
    Ok(resolve(&values))
}

/// The full rule list for an `ItPolicy`: every catalogue rule, in catalogue order, with the
/// value given in `values` (the last one when a rule is given twice) or its default.
///
/// Values are not checked here, and ones for rules not in the catalogue are dropped: check
/// an administrator's values with [`validate`] (or use [`try_resolve`]) first.
pub fn resolve(values: &[(&str, RuleValue)]) -> Vec<PolicyRule> {
    CATALOGUE
        .iter()
        .map(|spec| {
            let value = values
                .iter()
                .rev()
                .find(|(n, _)| *n == spec.name)
                .map_or(&spec.default, |(_, v)| v);
            PolicyRule {
                name: spec.name.to_owned(),
                value: Some(value.to_proto()),
            }
        })
        .collect()
}

/// [`resolve`], after checking every value with [`validate`].
///
/// # Errors
/// The first value's [`RuleError`].
pub fn try_resolve(values: &[(&str, RuleValue)]) -> Result<Vec<PolicyRule>, RuleError> {
    for (name, value) in values {
        validate(name, value)?;
    }
    Ok(resolve(values))
}

/// How one rule differs between two policies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleChange {
    /// Only the second policy has the rule.
    Added {
        /// The rule.
        name: String,
        /// Its value.
        value: RuleValue,
    },
    /// Only the first policy has the rule.
    Removed {
        /// The rule.
        name: String,
        /// Its value.
        value: RuleValue,
    },
    /// Both have the rule, with different values.
    Changed {
        /// The rule.
        name: String,
        /// The first policy's value.
        old: RuleValue,
        /// The second policy's value.
        new: RuleValue,
    },
}

impl RuleChange {
    /// The rule's name.
    pub fn name(&self) -> &str {
        match self {
            Self::Added { name, .. } | Self::Removed { name, .. } | Self::Changed { name, .. } => {
                name
            }
        }
    }
}

/// "+ name = value", "- name = value", "name: old -> new".
impl fmt::Display for RuleChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Added { name, value } => write!(f, "+ {name} = {value}"),
            Self::Removed { name, value } => write!(f, "- {name} = {value}"),
            Self::Changed { name, old, new } => write!(f, "{name}: {old} -> {new}"),
        }
    }
}

/// The value a rule list gives `name` (the last one when the rule is given twice).
fn value_in(rules: &[PolicyRule], name: &str) -> Option<RuleValue> {
    rules
        .iter()
        .rev()
        .filter(|r| r.name == name)
        .find_map(|r| r.value.as_ref().map(RuleValue::from_proto))
}

/// How policy `b` differs from policy `a`: first the rules of `a`, in `a`'s order, that `b`
/// removes or changes, then the rules only `b` has, in `b`'s order. A rule given twice
/// counts with its last value; a rule with no value counts as absent. Identical policies
/// give an empty list.
pub fn diff(a: &[PolicyRule], b: &[PolicyRule]) -> Vec<RuleChange> {
    let mut changes = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for rule in a {
        let name = rule.name.as_str();
        if seen.contains(&name) {
            continue;
        }
        seen.push(name);
        let Some(old) = value_in(a, name) else {
            continue;
        };
        match value_in(b, name) {
            None => changes.push(RuleChange::Removed {
                name: name.to_owned(),
                value: old,
            }),
            Some(new) if new != old => changes.push(RuleChange::Changed {
                name: name.to_owned(),
                old,
                new,
            }),
            Some(_) => {}
        }
    }
    let mut added: Vec<&str> = Vec::new();
    for rule in b {
        let name = rule.name.as_str();
        // Compared above when `a` gives it a value; listed once however often `b` gives it.
        if added.contains(&name) || value_in(a, name).is_some() {
            continue;
        }
        added.push(name);
        if let Some(value) = value_in(b, name) {
            changes.push(RuleChange::Added {
                name: name.to_owned(),
                value,
            });
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(name: &str) -> &'static Preset {
        preset(name).expect("a preset")
    }

    fn value(rules: &[PolicyRule], name: &str) -> RuleValue {
        value_in(rules, name).expect("the rule")
    }

    #[test]
    fn catalogue_is_consistent() {
        let mut names: Vec<_> = catalogue().iter().map(|s| s.name).collect();
        for rule in catalogue() {
            assert!(
                rule.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_'),
                "{} is snake_case",
                rule.name
            );
            assert!(!rule.description.is_empty());
            validate(rule.name, &rule.default).expect("the default is valid");
            assert_eq!(spec(rule.name), Some(rule));
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), catalogue().len(), "names are unique");
        assert_eq!(spec("no_such_rule"), None);
    }

    #[test]
    fn every_preset_validates() {
        assert_eq!(presets().len(), 6);
        for p in presets() {
            for (name, value) in p.overrides {
                validate(name, value).unwrap_or_else(|e| panic!("{}: {e}", p.name));
            }
            try_resolve(p.overrides).expect("resolves");
            assert_eq!(preset(p.name), Some(p));
        }
    }

    #[test]
    fn preset_lookup_ignores_case() {
        assert_eq!(get("advanced security").name, "Advanced Security");
        assert_eq!(get("DEFAULT").name, "Default");
        assert_eq!(
            get(" individual-liable devices ").name,
            "Individual-Liable Devices"
        );
        assert_eq!(preset("Paranoid"), None);
    }

    #[test]
    fn presets_differ_from_default_as_documented() {
        let default = get("Default").rules();
        assert_eq!(default, resolve(&[]));
        assert!(get("Default").overrides.is_empty());

        let basic = get("Basic Password Security").rules();
        assert_eq!(value(&basic, "password_required"), RuleValue::Flag(true));
        assert_eq!(value(&basic, "password_min_length"), RuleValue::Number(4));
        assert_eq!(
            value(&basic, "password_complexity"),
            RuleValue::text("none")
        );

        let medium = get("Medium Password Security").rules();
        assert_eq!(value(&medium, "password_min_length"), RuleValue::Number(6));
        assert_eq!(
            value(&medium, "password_complexity"),
            RuleValue::text("letters and digits")
        );
        assert_eq!(
            value(&medium, "max_password_attempts"),
            RuleValue::Number(10)
        );
        assert_eq!(
            value(&medium, "inactivity_lock_minutes"),
            RuleValue::Number(15)
        );
        assert_eq!(
            value(&medium, "allow_third_party_apps"),
            RuleValue::Flag(true)
        );

        // No 3rd party: exactly Medium with third-party applications off.
        let no_apps = get("Medium Security with No 3rd Party Applications").rules();
        assert_eq!(
            diff(&medium, &no_apps),
            vec![RuleChange::Changed {
                name: "allow_third_party_apps".into(),
                old: RuleValue::Flag(true),
                new: RuleValue::Flag(false),
            }]
        );

        let liable = get("Individual-Liable Devices").rules();
        assert_eq!(value(&liable, "password_required"), RuleValue::Flag(true));
        for name in ["disable_camera", "disable_bluetooth", "content_protection"] {
            assert_eq!(value(&liable, name), RuleValue::Flag(false), "{name}");
        }
        assert_eq!(
            value(&liable, "allow_third_party_apps"),
            RuleValue::Flag(true)
        );

        // Every preset but Default changes something.
        for p in &presets()[1..] {
            assert!(!diff(&default, &p.rules()).is_empty(), "{}", p.name);
        }
    }

    #[test]
    fn validate_explains_what_is_wrong() {
        assert_eq!(
            validate("password_required", &RuleValue::Flag(true)),
            Ok(())
        );
        assert_eq!(
            validate("password_min_length", &RuleValue::Number(14)),
            Ok(())
        );

        let e = validate("password_strength", &RuleValue::Flag(true)).expect_err("unknown");
        assert_eq!(
            e,
            RuleError::Unknown {
                name: "password_strength".into()
            }
        );
        assert_eq!(
            e.to_string(),
            "there is no IT policy rule called \"password_strength\""
        );

        let e = validate("password_min_length", &RuleValue::Flag(true)).expect_err("type");
        assert!(matches!(e, RuleError::WrongType { .. }));
        assert_eq!(
            e.to_string(),
            "password_min_length takes a number, not on or off"
        );
        let e = validate("disable_camera", &RuleValue::text("yes")).expect_err("type");
        assert_eq!(e.to_string(), "disable_camera takes on or off, not a text");

        let e = validate("password_min_length", &RuleValue::Number(3)).expect_err("range");
        assert_eq!(
            e,
            RuleError::OutOfRange {
                name: "password_min_length",
                value: 3,
                min: 4,
                max: 14
            }
        );
        assert_eq!(
            e.to_string(),
            "password_min_length must be from 4 to 14; 3 is out of range"
        );
        assert!(validate("max_password_attempts", &RuleValue::Number(11)).is_err());
        assert!(validate("inactivity_lock_minutes", &RuleValue::Number(-1)).is_err());

        let e = validate(
            "password_complexity",
            &RuleValue::text("Letters and digits"),
        )
        .expect_err("not allowed");
        assert!(matches!(e, RuleError::NotAllowed { .. }));
        assert_eq!(
            e.to_string(),
            "password_complexity must be one of \"none\", \"letters and digits\", \
             \"letters, digits and symbols\"; \"Letters and digits\" is not"
        );
    }

    #[test]
    fn resolve_fills_defaults_in_catalogue_order() {
        let rules = resolve(&[
            ("inactivity_lock_minutes", RuleValue::Number(20)),
            ("password_required", RuleValue::Flag(true)),
            ("not_a_rule", RuleValue::Flag(true)),
            ("inactivity_lock_minutes", RuleValue::Number(30)),
        ]);
        let names: Vec<_> = rules.iter().map(|r| r.name.as_str()).collect();
        let order: Vec<_> = catalogue().iter().map(|s| s.name).collect();
        assert_eq!(names, order);
        for (rule, spec) in rules.iter().zip(catalogue()) {
            let expected = match spec.name {
                "inactivity_lock_minutes" => RuleValue::Number(30),
                "password_required" => RuleValue::Flag(true),
                _ => spec.default.clone(),
            };
            assert_eq!(rule.value, Some(expected.to_proto()), "{}", spec.name);
        }
        assert!(try_resolve(&[("not_a_rule", RuleValue::Flag(true))]).is_err());
    }

    #[test]
    fn diff_default_to_advanced() {
        let changes = diff(&get("Default").rules(), &get("Advanced Security").rules());
        let changed = |name: &str, old: RuleValue, new: RuleValue| RuleChange::Changed {
            name: name.into(),
            old,
            new,
        };
        assert_eq!(
            changes,
            vec![
                changed(
                    "password_required",
                    RuleValue::Flag(false),
                    RuleValue::Flag(true)
                ),
                changed(
                    "password_min_length",
                    RuleValue::Number(4),
                    RuleValue::Number(8)
                ),
                changed(
                    "password_complexity",
                    RuleValue::text("none"),
                    RuleValue::text("letters, digits and symbols")
                ),
                changed(
                    "max_password_attempts",
                    RuleValue::Number(10),
                    RuleValue::Number(5)
                ),
                changed(
                    "inactivity_lock_minutes",
                    RuleValue::Number(0),
                    RuleValue::Number(5)
                ),
                changed(
                    "disable_camera",
                    RuleValue::Flag(false),
                    RuleValue::Flag(true)
                ),
                changed(
                    "content_protection",
                    RuleValue::Flag(false),
                    RuleValue::Flag(true)
                ),
            ]
        );
        assert_eq!(changes[0].to_string(), "password_required: off -> on");
        assert_eq!(
            changes[2].to_string(),
            "password_complexity: none -> letters, digits and symbols"
        );
    }

    #[test]
    fn diff_with_itself_is_empty() {
        for p in presets() {
            let rules = p.rules();
            assert_eq!(diff(&rules, &rules), vec![], "{}", p.name);
        }
        assert_eq!(diff(&[], &[]), vec![]);
    }

    #[test]
    fn diff_added_and_removed() {
        let rule = |name: &str, v: Value| PolicyRule {
            name: name.into(),
            value: Some(v),
        };
        let a = vec![
            rule("disable_camera", Value::Flag(true)),
            rule("old_rule", Value::Number(1)),
        ];
        let b = vec![
            rule("disable_camera", Value::Flag(true)),
            rule("new_rule", Value::Text("x".into())),
        ];
        let changes = diff(&a, &b);
        assert_eq!(
            changes,
            vec![
                RuleChange::Removed {
                    name: "old_rule".into(),
                    value: RuleValue::Number(1)
                },
                RuleChange::Added {
                    name: "new_rule".into(),
                    value: RuleValue::text("x")
                },
            ]
        );
        assert_eq!(changes[0].to_string(), "- old_rule = 1");
        assert_eq!(changes[1].to_string(), "+ new_rule = x");
    }

    #[test]
    fn values_display_for_administrators() {
        assert_eq!(RuleValue::Flag(true).to_string(), "on");
        assert_eq!(RuleValue::Flag(false).to_string(), "off");
        assert_eq!(RuleValue::Number(25_600).to_string(), "25600");
        assert_eq!(
            RuleValue::text("letters and digits").to_string(),
            "letters and digits"
        );
        for v in [
            RuleValue::Flag(true),
            RuleValue::Number(-3),
            RuleValue::text("none"),
        ] {
            assert_eq!(RuleValue::from_proto(&v.to_proto()), v);
        }
    }

    #[test]
    fn typed_values_are_parsed_and_checked() {
        assert_eq!(parse("password_required", "On"), Ok(RuleValue::Flag(true)));
        assert_eq!(parse("password_required", "no"), Ok(RuleValue::Flag(false)));
        assert_eq!(
            parse(" password_min_length ", " 8 "),
            Ok(RuleValue::Number(8))
        );
        assert_eq!(
            parse("password_complexity", "Letters and Digits"),
            Ok(RuleValue::text("letters and digits"))
        );
        assert!(matches!(
            parse("password_min_length", "eight"),
            Err(RuleError::WrongType { .. })
        ));
        assert!(matches!(
            parse("password_min_length", "40"),
            Err(RuleError::OutOfRange { .. })
        ));
        assert!(matches!(
            parse("password_complexity", "emoji"),
            Err(RuleError::NotAllowed { .. })
        ));
        assert!(matches!(
            parse("colour", "red"),
            Err(RuleError::Unknown { .. })
        ));
        assert!(matches!(
            parse("disable_camera", "maybe"),
            Err(RuleError::WrongType { .. })
        ));
    }

    #[test]
    fn stored_rule_lists_read_back_whole() {
        let rules = preset("Advanced Security").expect("preset").rules();
        assert_eq!(from_json(&to_json(&rules)), Ok(rules));
        // an old version that lacks a rule gets the default; unknown rules are dropped
        let partial = from_json(r#"{"password_required":true,"gone_rule":5}"#).expect("reads");
        assert_eq!(partial.len(), catalogue().len());
        assert!(from_json("[1,2]").is_err());
        assert!(from_json("not json").is_err());
    }
}
