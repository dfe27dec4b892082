//! "Did you mean" suggestions for extension names.

/// Candidates close to `name`, best first (at most three). A candidate whose last path
/// segment equals `name` (`qemu-guest-agent` → `siderolabs/qemu-guest-agent`) ranks first.
///
/// ```
/// let known = ["siderolabs/qemu-guest-agent", "siderolabs/iscsi-tools"];
/// assert_eq!(
///     talos_factory::did_you_mean("siderolabs/qemu-guest-agnet", known),
///     vec!["siderolabs/qemu-guest-agent".to_owned()]
/// );
/// assert_eq!(
///     talos_factory::did_you_mean("iscsi-tools", known),
///     vec!["siderolabs/iscsi-tools".to_owned()]
/// );
/// ```
pub fn did_you_mean<'a, I>(name: &str, candidates: I) -> Vec<String>
where
    I: IntoIterator<Item = &'a str>,
{
    let lower = name.to_lowercase();
    let threshold = (lower.chars().count() / 3).max(2);
    let mut scored: Vec<(usize, &str)> = candidates
        .into_iter()
        .filter_map(|c| {
            let cl = c.to_lowercase();
            let tail = cl.rsplit('/').next().unwrap_or(&cl);
            let d = if tail == lower || cl == lower {
                0
            } else {
                levenshtein(&lower, &cl).min(levenshtein(&lower, tail) + 1)
            };
            (d <= threshold).then_some((d, c))
        })
        .collect();
    scored.sort();
    scored
        .into_iter()
        .take(3)
        .map(|(_, c)| c.to_owned())
        .collect()
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert_eq!(levenshtein("", "ab"), 2);
    }

    #[test]
    fn nothing_close_gives_nothing() {
        assert!(did_you_mean("zzzzzzzz", ["siderolabs/qemu-guest-agent"]).is_empty());
    }
}
