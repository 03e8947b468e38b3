//! The deny-list (#11, an Aho-Corasick automaton) against the documented rule
//! ("a pattern is found when the lower-cased script contains the
//! lower-cased pattern, `str::to_lowercase`, Unicode rules"; the message
//! names the policy's first pattern found).

use voidrunner_db::validate::{ScriptPolicy, script_content};

/// The documented decision: the first non-empty pattern, in policy order,
/// whose lower-case form the lower-cased script contains.
fn expected<'p>(script: &str, patterns: &'p [String]) -> Option<&'p str> {
    let lowered = script.to_lowercase();
    patterns
        .iter()
        .filter(|p| !p.is_empty())
        .find(|p| lowered.contains(&p.to_lowercase()))
        .map(String::as_str)
}

#[test]
fn the_deny_list_decides_as_documented_on_tricky_unicode() {
    // Case-folding traps: Kelvin sign, dotted/dotless i, final sigma,
    // sharp s, long s, ligatures, combining marks; ASCII neighbours.
    let alphabet: Vec<&str> = vec![
        "k", "K", "\u{212A}", "i", "I", "\u{130}", "\u{131}", "\u{3A3}", "\u{3C3}", "\u{3C2}", "ß",
        "\u{1E9E}", "s", "S", "\u{17F}", "\u{FB01}", "e\u{301}", "\u{C9}", " ", "-", "r", "m", "f",
        "/", "a", "A", "\u{2126}", "\u{3C9}",
    ];
    let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    let mut mismatches = Vec::new();
    for _ in 0..20_000 {
        let patterns: Vec<String> = (0..1 + next(4))
            .map(|_| {
                (0..next(4))
                    .map(|_| alphabet[next(alphabet.len())])
                    .collect()
            })
            .collect();
        let script: String = "x ".to_owned()
            + &(0..1 + next(12))
                .map(|_| alphabet[next(alphabet.len())])
                .collect::<String>();
        let policy = ScriptPolicy {
            deny_patterns: patterns.clone(),
        };
        let got = match script_content(&script, &policy) {
            Ok(()) => None,
            Err(e) => Some(e.to_string()),
        };
        let want = expected(&script, &patterns);
        let agree = match (&got, want) {
            (None, None) => true,
            (Some(message), Some(p)) => message.contains(&format!("`{p}`")),
            _ => false,
        };
        if !agree && mismatches.len() < 10 {
            mismatches.push(format!(
                "{script:?} {patterns:?}: got {got:?}, want {want:?}"
            ));
        }
    }
    assert!(mismatches.is_empty(), "{mismatches:#?}");
}
