//! The password policy (NIST SP 800-63B §5.1.1.2) as a table of accepted and refused examples.

use vigil_auth::password::{PasswordPolicy, PasswordRefusal};

#[test]
fn the_policy_as_a_table() {
    let policy = PasswordPolicy::default();
    let ctx = ["alice.smith", "acme", "payments"];
    let long_64 = "correct horse battery staple and then some more words to pad it!";
    assert_eq!(long_64.chars().count(), 64);
    let accepted: &[(&str, &str)] = &[
        ("exactly 8, nothing else asked", "tr0ub4do"),
        (
            "no composition rules: lowercase letters only",
            "velvetmorningtide",
        ),
        (
            "no composition rules: digits only, not a sequence",
            "80417395",
        ),
        ("spaces are allowed", "my cat eats paper clips"),
        ("64 characters are accepted", long_64),
        (
            "256 characters are accepted",
            &"Zebra quokka! ".repeat(19)[..256],
        ),
        ("any Unicode is allowed", "Grüße aus Köln, 2026"),
        ("emoji count as characters", "🦀🦀 rusty crab 🦀🦀"),
        (
            "a common word inside a longer phrase is fine",
            "password is not my password manager",
        ),
    ];
    for (why, pw) in accepted {
        assert_eq!(policy.check(pw, &ctx), Ok(()), "{why}: {pw:?}");
    }
    let refused: &[(&str, &str, PasswordRefusal)] = &[
        ("7 characters", "tr0ub4d", PasswordRefusal::TooShort(8)),
        (
            "7 characters of Unicode (counted as characters, not bytes)",
            "ÄÖÜäöüß",
            PasswordRefusal::TooShort(8),
        ),
        (
            "257 characters",
            &"a1b2c3d4e5".repeat(26)[..257],
            PasswordRefusal::TooLong(256),
        ),
        ("common: password1", "password1", PasswordRefusal::Common),
        (
            "common, whatever the case",
            "PassWord1",
            PasswordRefusal::Common,
        ),
        (
            "breached: qwertyuiop",
            "qwertyuiop",
            PasswordRefusal::Common,
        ),
        ("breached: iloveyou", "iloveyou", PasswordRefusal::Common),
        (
            "one repeated character",
            "zzzzzzzzzz",
            PasswordRefusal::Repetitive,
        ),
        (
            "ascending sequence",
            "abcdefghij",
            PasswordRefusal::Repetitive,
        ),
        (
            "descending sequence",
            "98765432",
            PasswordRefusal::Repetitive,
        ),
        (
            "a short unit repeated",
            "xyzxyzxyz",
            PasswordRefusal::Repetitive,
        ),
        (
            "contains the user name",
            "Alice.Smith-2026",
            PasswordRefusal::ContextWord("alice.smith".into()),
        ),
        (
            "contains the service name",
            "my-payments-pass",
            PasswordRefusal::ContextWord("payments".into()),
        ),
        (
            "a control character",
            "line\nbreak in it",
            PasswordRefusal::ControlCharacter,
        ),
    ];
    for (why, pw, expected) in refused {
        assert_eq!(
            policy.check(pw, &ctx).as_ref(),
            Err(expected),
            "{why}: {pw:?}"
        );
    }
}

#[test]
fn the_minimum_is_configurable_upward_only() {
    assert_eq!(PasswordPolicy::with_min_chars(4).min_chars(), 8);
    let strict = PasswordPolicy::with_min_chars(15);
    assert_eq!(
        strict.check("velvetmorning!", &[]),
        Err(PasswordRefusal::TooShort(15))
    );
    assert_eq!(strict.check("velvetmorningtide", &[]), Ok(()));
}

#[test]
fn refusal_messages_never_repeat_the_password() {
    let policy = PasswordPolicy::default();
    for pw in ["short", "password1", "zzzzzzzzzz", "alice.smith1"] {
        let e = policy.check(pw, &["alice.smith"]).unwrap_err().to_string();
        assert!(!e.contains(pw), "{e}");
    }
}
