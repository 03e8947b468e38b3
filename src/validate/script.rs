//! Scripts: the size rules and the deny-list, one Aho-Corasick automaton
//! per policy.

use super::*;

/// Script: not blank, at most 65535 characters, no denied pattern.
pub fn script_content(script: &str, policy: &ScriptPolicy) -> Result<()> {
    no_nul("script_content", script)?;
    not_blank("script_content", script)?;
    max_chars("script_content", script, SCRIPT_MAX_CHARS)?;
    denied_pattern(script, &DenyList::shared(policy))
}

/// The script checks of [`script_content`] with the deny-list already
/// prepared: a batch prepares it once, not once per task.
pub(super) fn script_content_with(script: &str, deny: &DenyList) -> Result<()> {
    no_nul("script_content", script)?;
    not_blank("script_content", script)?;
    max_chars("script_content", script, SCRIPT_MAX_CHARS)?;
    denied_pattern(script, deny)
}

pub(super) fn denied_pattern(script: &str, deny: &DenyList) -> Result<()> {
    match deny.find(script)? {
        Some(pattern) => Err(Error::validation(
            "script_content",
            format!("contains the denied pattern `{pattern}`"),
        )),
        None => Ok(()),
    }
}

/// A [`ScriptPolicy`]'s patterns, compiled once into one automaton that
/// finds any of them in a single pass over the script.
///
/// A pattern is found when the lower-cased script contains the lower-cased
/// pattern (`str::to_lowercase`, Unicode rules). For a script that is all
/// ASCII, lower-casing it is ASCII lower-casing, so the automaton matches
/// ignoring ASCII case instead of building the lower-cased copy: the very
/// same decisions, without an allocation per task. (The lower-cased
/// patterns hold no ASCII upper-case letter, and neither does a
/// lower-cased script, so ignoring ASCII case changes nothing for the
/// Unicode path either.)
#[derive(Debug)]
pub(crate) struct DenyList {
    /// The non-empty patterns as configured, for the message, in the
    /// policy's order (the automaton's pattern ids index it).
    pub(super) patterns: Vec<String>,
    /// `Ok(None)` without patterns; `Err` with what kept the automaton
    /// from being built (patterns too many or too long for it), which
    /// refuses every script rather than letting all through.
    pub(super) automaton: std::result::Result<Option<AhoCorasick>, String>,
}

impl DenyList {
    /// The non-empty patterns of `policy` (an empty one would match every
    /// script; it is ignored, as it always was).
    pub(crate) fn new(policy: &ScriptPolicy) -> Self {
        let patterns: Vec<String> = policy
            .deny_patterns
            .iter()
            .filter(|p| !p.is_empty())
            .cloned()
            .collect();
        let automaton = if patterns.is_empty() {
            Ok(None)
        } else {
            AhoCorasick::builder()
                .ascii_case_insensitive(true)
                .build(patterns.iter().map(|p| p.to_lowercase()))
                .map(Some)
                .map_err(|e| e.to_string())
        };
        DenyList {
            patterns,
            automaton,
        }
    }

    /// `policy`'s list, shared: the default policy's is compiled once per
    /// process, so a repository made per transaction compiles nothing.
    pub(crate) fn shared(policy: &ScriptPolicy) -> Arc<Self> {
        static DEFAULT: LazyLock<Arc<DenyList>> =
            LazyLock::new(|| Arc::new(DenyList::new(&ScriptPolicy::default())));
        if policy
            .deny_patterns
            .iter()
            .eq(ScriptPolicy::DEFAULT_DENY.iter())
        {
            Arc::clone(&DEFAULT)
        } else {
            Arc::new(DenyList::new(policy))
        }
    }

    /// The first pattern (in the policy's order) `script` contains, ignoring
    /// case; `Error::Config` when the list could not be compiled.
    pub(super) fn find(&self, script: &str) -> Result<Option<&str>> {
        let automaton = match &self.automaton {
            Ok(Some(automaton)) => automaton,
            Ok(None) => return Ok(None),
            Err(reason) => {
                return Err(Error::config(format!(
                    "the script deny-list cannot be used: {reason}"
                )));
            }
        };
        let lowered;
        let hay = if script.is_ascii() {
            script
        } else {
            lowered = script.to_lowercase();
            &lowered
        };
        if !automaton.is_match(hay) {
            return Ok(None);
        }
        // Denied: name the policy's first pattern found, wherever it is.
        Ok(automaton
            .find_overlapping_iter(hay)
            .map(|m| m.pattern().as_usize())
            .min()
            .and_then(|first| self.patterns.get(first))
            .map(String::as_str))
    }
}
