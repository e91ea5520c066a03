//! The IT policy's rules as the device uses them, and the compliance check: pure functions.
//!
//! Rule names and ranges are the server's catalogue (`bramble_server::policy::rules`); values
//! arrive as text in [`AppliedPolicy::rules`](crate::activation::AppliedPolicy) ("true" or
//! "false", a number, or the text). A rule the device does not know is ignored (a newer
//! server); a known rule with a value it cannot use is reported as a problem and the nearest
//! usable value applied.

use std::collections::BTreeMap;

use serde::Serialize;

/// What a device password must contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Complexity {
    /// Anything.
    #[serde(rename = "none")]
    None,
    /// At least one letter and one digit.
    #[serde(rename = "letters and digits")]
    LettersAndDigits,
    /// At least one letter, one digit and one symbol.
    #[serde(rename = "letters, digits and symbols")]
    LettersDigitsAndSymbols,
}

impl Complexity {
    fn parse(s: &str) -> Option<Complexity> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" | "" => Some(Complexity::None),
            "letters and digits" => Some(Complexity::LettersAndDigits),
            "letters, digits and symbols" => Some(Complexity::LettersDigitsAndSymbols),
            _ => None,
        }
    }

    /// The policy's words.
    pub fn as_str(self) -> &'static str {
        match self {
            Complexity::None => "none",
            Complexity::LettersAndDigits => "letters and digits",
            Complexity::LettersDigitsAndSymbols => "letters, digits and symbols",
        }
    }
}

/// The IT policy's rules, typed, with the catalogue's defaults for what the policy leaves out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicySettings {
    /// The user must set a device password.
    pub password_required: bool,
    /// The fewest characters a device password may have (4-14).
    pub password_min_length: u32,
    /// What a device password must contain.
    pub password_complexity: Complexity,
    /// Wrong passwords in a row before the device wipes itself (3-10).
    pub max_password_attempts: u32,
    /// Idle minutes before the screen locks (0: never).
    pub inactivity_lock_minutes: u32,
    /// The camera is off.
    pub disable_camera: bool,
    /// Bluetooth is off.
    pub disable_bluetooth: bool,
    /// The user may install applications of their own.
    pub allow_third_party_apps: bool,
    /// The largest attachment the device downloads, KB (1024 bytes); `None`: no rule.
    pub max_attachment_kb: Option<u64>,
    /// Stored data is encrypted while locked.
    pub content_protection: bool,
}

impl Default for PolicySettings {
    /// A device without an IT policy.
    fn default() -> Self {
        PolicySettings {
            password_required: false,
            password_min_length: 4,
            password_complexity: Complexity::None,
            max_password_attempts: 10,
            inactivity_lock_minutes: 0,
            disable_camera: false,
            disable_bluetooth: false,
            allow_third_party_apps: true,
            max_attachment_kb: None,
            content_protection: false,
        }
    }
}

fn flag(name: &str, v: &str, problems: &mut Vec<String>) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "on" | "yes" | "1" => Some(true),
        "false" | "off" | "no" | "0" => Some(false),
        _ => {
            problems.push(format!(
                "The IT policy rule {name} has the value {v:?}, which is not on or off; it is not applied."
            ));
            None
        }
    }
}

fn number(name: &str, v: &str, min: i64, max: i64, problems: &mut Vec<String>) -> Option<i64> {
    let Ok(n) = v.trim().parse::<i64>() else {
        problems.push(format!(
            "The IT policy rule {name} has the value {v:?}, which is not a number; it is not applied."
        ));
        return None;
    };
    let clamped = n.clamp(min, max);
    if clamped != n {
        problems.push(format!(
            "The IT policy rule {name} is {n}, outside what this device supports ({min} to \
             {max}); {clamped} is applied."
        ));
    }
    Some(clamped)
}

fn small(n: i64) -> u32 {
    u32::try_from(n).unwrap_or(0)
}

impl PolicySettings {
    /// The settings of a policy's rules (as text), and the problems with values it could not
    /// use as they are.
    pub fn from_rules(rules: &BTreeMap<String, String>) -> (PolicySettings, Vec<String>) {
        let mut s = PolicySettings::default();
        let mut problems = Vec::new();
        let p = &mut problems;
        for (name, v) in rules {
            match name.as_str() {
                "password_required" => {
                    if let Some(b) = flag(name, v, p) {
                        s.password_required = b;
                    }
                }
                "password_min_length" => {
                    if let Some(n) = number(name, v, 4, 14, p) {
                        s.password_min_length = small(n);
                    }
                }
                "password_complexity" => match Complexity::parse(v) {
                    Some(c) => s.password_complexity = c,
                    None => {
                        // The strictest, rather than none at all.
                        s.password_complexity = Complexity::LettersDigitsAndSymbols;
                        p.push(format!(
                            "The IT policy rule password_complexity has the value {v:?}, which \
                             this device does not know; letters, digits and symbols are asked \
                             for."
                        ));
                    }
                },
                "max_password_attempts" => {
                    if let Some(n) = number(name, v, 3, 10, p) {
                        s.max_password_attempts = small(n);
                    }
                }
                "inactivity_lock_minutes" => {
                    if let Some(n) = number(name, v, 0, 60, p) {
                        s.inactivity_lock_minutes = small(n);
                    }
                }
                "disable_camera" => {
                    if let Some(b) = flag(name, v, p) {
                        s.disable_camera = b;
                    }
                }
                "disable_bluetooth" => {
                    if let Some(b) = flag(name, v, p) {
                        s.disable_bluetooth = b;
                    }
                }
                "allow_third_party_apps" => {
                    if let Some(b) = flag(name, v, p) {
                        s.allow_third_party_apps = b;
                    }
                }
                "max_attachment_kb" => {
                    if let Some(n) = number(name, v, 0, 102_400, p) {
                        s.max_attachment_kb = u64::try_from(n).ok();
                    }
                }
                "content_protection" => {
                    if let Some(b) = flag(name, v, p) {
                        s.content_protection = b;
                    }
                }
                // A rule of a newer server: nothing this device can do about it.
                _ => {}
            }
        }
        (s, problems)
    }

    /// The largest attachment the device downloads under this policy, in bytes.
    pub fn max_attachment_bytes(&self) -> Option<u64> {
        self.max_attachment_kb.map(|kb| kb.saturating_mul(1024))
    }

    /// Whether `password` may be set under this policy; the rule it breaks, in words, if not.
    ///
    /// # Errors
    /// The sentence saying what the password lacks.
    pub fn check_password(&self, password: &str) -> Result<(), String> {
        let facts = PasswordFacts::of(password);
        if facts.length == 0 {
            return Err("the password is empty".into());
        }
        if facts.length < self.password_min_length {
            return Err(format!(
                "your IT policy asks for at least {} characters, and this password has {}",
                self.password_min_length, facts.length
            ));
        }
        if !facts.meets(self.password_complexity) {
            return Err(format!(
                "your IT policy asks for a password with {}",
                self.password_complexity.as_str()
            ));
        }
        Ok(())
    }
}

/// What the compliance check knows of a password (the password itself is never kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PasswordFacts {
    /// Characters.
    pub length: u32,
    /// It has a letter.
    pub letters: bool,
    /// It has a digit.
    pub digits: bool,
    /// It has something that is neither.
    pub symbols: bool,
}

impl PasswordFacts {
    /// The facts of a password.
    pub fn of(password: &str) -> PasswordFacts {
        PasswordFacts {
            length: u32::try_from(password.chars().count()).unwrap_or(u32::MAX),
            letters: password.chars().any(char::is_alphabetic),
            digits: password.chars().any(|c| c.is_ascii_digit()),
            symbols: password.chars().any(|c| !c.is_alphanumeric()),
        }
    }

    fn meets(self, c: Complexity) -> bool {
        match c {
            Complexity::None => true,
            Complexity::LettersAndDigits => self.letters && self.digits,
            Complexity::LettersDigitsAndSymbols => self.letters && self.digits && self.symbols,
        }
    }
}

/// What the device is, for the compliance check.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeviceFacts {
    /// The device password, when one is set.
    pub password: Option<PasswordFacts>,
    /// Applications the user installed ("name version").
    pub user_apps: Vec<String>,
}

/// What keeps the device from complying with the policy, in a phone user's words; empty when
/// it complies.
pub fn compliance(policy: &PolicySettings, device: &DeviceFacts) -> Vec<String> {
    let change = "change it with `bramble device password set`";
    let mut problems = Vec::new();
    match device.password {
        None if policy.password_required => problems.push(
            "A device password is required and none is set: run `bramble device password set`."
                .to_owned(),
        ),
        None => {}
        Some(pw) => {
            if pw.length < policy.password_min_length {
                problems.push(format!(
                    "The device password has {} characters and your IT policy asks for at least \
                     {}: {change}.",
                    pw.length, policy.password_min_length
                ));
            }
            if !pw.meets(policy.password_complexity) {
                problems.push(format!(
                    "The device password must contain {}: {change}.",
                    policy.password_complexity.as_str()
                ));
            }
        }
    }
    if !policy.allow_third_party_apps && !device.user_apps.is_empty() {
        problems.push(format!(
            "Your IT policy does not allow applications you installed yourself: remove {} with \
             `bramble device apps remove NAME`.",
            device.user_apps.join(", ")
        ));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn pw(p: &str) -> DeviceFacts {
        DeviceFacts {
            password: Some(PasswordFacts::of(p)),
            user_apps: Vec::new(),
        }
    }

    #[test]
    fn no_policy_asks_for_nothing() {
        let s = PolicySettings::default();
        assert!(compliance(&s, &DeviceFacts::default()).is_empty());
        assert_eq!(s.max_password_attempts, 10);
        assert_eq!(s.max_attachment_bytes(), None);
    }

    #[test]
    fn a_required_password_that_is_missing_is_a_problem_in_words() {
        let (s, problems) = PolicySettings::from_rules(&rules(&[
            ("password_required", "true"),
            ("password_min_length", "4"),
        ]));
        assert!(problems.is_empty(), "{problems:?}");
        let got = compliance(&s, &DeviceFacts::default());
        assert_eq!(
            got,
            ["A device password is required and none is set: run `bramble device password set`."]
        );
        assert!(compliance(&s, &pw("1234")).is_empty());
    }

    #[test]
    fn length_and_complexity_are_checked() {
        let (s, _) = PolicySettings::from_rules(&rules(&[
            ("password_required", "true"),
            ("password_min_length", "8"),
            ("password_complexity", "letters, digits and symbols"),
        ]));
        let got = compliance(&s, &pw("abc1"));
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[0].contains("has 4 characters") && got[0].contains("at least 8"));
        assert!(got[1].contains("letters, digits and symbols"));
        assert!(compliance(&s, &pw("abcd123!")).is_empty());
        assert!(s.check_password("abcd1234").is_err());
        assert!(s.check_password("abcd123!").is_ok());
        assert!(
            s.check_password("ab1!")
                .expect_err("short")
                .contains("at least 8 characters")
        );
        let (s, _) =
            PolicySettings::from_rules(&rules(&[("password_complexity", "letters and digits")]));
        assert!(s.check_password("abcdef").is_err());
        assert!(s.check_password("abc123").is_ok());
        assert!(s.check_password("").is_err());
    }

    #[test]
    fn third_party_apps_when_forbidden_are_a_problem() {
        let (s, _) = PolicySettings::from_rules(&rules(&[("allow_third_party_apps", "false")]));
        let facts = DeviceFacts {
            password: None,
            user_apps: vec!["Game 1.0".into()],
        };
        let got = compliance(&s, &facts);
        assert_eq!(got.len(), 1);
        assert!(got[0].contains("Game 1.0"), "{got:?}");
    }

    #[test]
    fn values_out_of_range_or_of_the_wrong_kind_are_reported_and_bounded() {
        let (s, problems) = PolicySettings::from_rules(&rules(&[
            ("password_min_length", "99"),
            ("max_password_attempts", "1"),
            ("disable_camera", "maybe"),
            ("inactivity_lock_minutes", "ten"),
            ("password_complexity", "emoji"),
            ("max_attachment_kb", "100"),
            ("disable_bluetooth", "on"),
            ("some_future_rule", "whatever"),
        ]));
        assert_eq!(s.password_min_length, 14);
        assert_eq!(s.max_password_attempts, 3);
        assert!(!s.disable_camera);
        assert!(s.disable_bluetooth);
        assert_eq!(s.inactivity_lock_minutes, 0);
        assert_eq!(s.password_complexity, Complexity::LettersDigitsAndSymbols);
        assert_eq!(s.max_attachment_bytes(), Some(100 * 1024));
        assert_eq!(problems.len(), 5, "{problems:?}");
    }
}
