//! Proxmox calendar events (the `schedule` of backup jobs), checked before anything reaches
//! Proxmox. The grammar follows proxmox-time (`src/calendar_event.rs`, `parse_calendar_event`)
//! and the PVE admin guide's "Schedule Format" appendix: an optional weekday list, an
//! optional date (`[YEAR-]MONTH-DAY`), an optional time (`HOUR:MINUTE[:SECOND]`), or one of
//! the named events (`daily`, `weekly`, ...). Each component is `*`, a value, a range
//! `a..b`, a repetition `a/step` or `a..b/step`, or a comma list of those.

/// Named events proxmox-time accepts on their own.
const NAMED: &[&str] = &[
    "minutely",
    "hourly",
    "daily",
    "weekly",
    "monthly",
    "yearly",
    "annually",
    "quarterly",
    "semiannually",
    "semi-annually",
];

const WEEKDAYS: &[&str] = &[
    "mon",
    "tue",
    "wed",
    "thu",
    "fri",
    "sat",
    "sun",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// Check `text` as a calendar event; the error says what is wrong in it.
pub fn check(text: &str) -> Result<(), String> {
    let t = text.trim().to_ascii_lowercase();
    if NAMED.contains(&t.as_str()) {
        return Ok(());
    }
    let mut tokens: Vec<&str> = t.split_whitespace().collect();
    if tokens.is_empty() {
        return Err("an empty schedule".into());
    }
    if tokens[0].split(',').all(is_weekday_item) {
        tokens.remove(0);
    }
    let (mut date, mut time) = (None, None);
    for tok in tokens {
        if tok.contains(':') && time.is_none() {
            time = Some(tok);
        } else if tok.contains('-') && date.is_none() && time.is_none() {
            date = Some(tok);
        } else {
            return Err(format!("`{tok}` is not a weekday, date or time"));
        }
    }
    if let Some(d) = date {
        let parts: Vec<&str> = d.split('-').collect();
        let bounds: &[(&str, u32, u32)] = match parts.len() {
            2 => &[("month", 1, 12), ("day", 1, 31)],
            3 => &[("year", 1970, 9999), ("month", 1, 12), ("day", 1, 31)],
            _ => return Err(format!("`{d}` is not a date (`[YEAR-]MONTH-DAY`)")),
        };
        for (p, (what, lo, hi)) in parts.iter().zip(bounds) {
            component(p, what, *lo, *hi)?;
        }
    }
    if let Some(tm) = time {
        let parts: Vec<&str> = tm.split(':').collect();
        let bounds: &[(&str, u32, u32)] = match parts.len() {
            2 => &[("hour", 0, 23), ("minute", 0, 59)],
            3 => &[("hour", 0, 23), ("minute", 0, 59), ("second", 0, 59)],
            _ => return Err(format!("`{tm}` is not a time (`HOUR:MINUTE[:SECOND]`)")),
        };
        for (p, (what, lo, hi)) in parts.iter().zip(bounds) {
            component(p, what, *lo, *hi)?;
        }
    }
    Ok(())
}

fn is_weekday_item(item: &str) -> bool {
    match item.split_once("..") {
        Some((a, b)) => WEEKDAYS.contains(&a) && WEEKDAYS.contains(&b),
        None => WEEKDAYS.contains(&item),
    }
}

/// One comma list of `*`, `n`, `a..b`, `n/step`, `a..b/step`, each value within `lo..=hi`.
fn component(text: &str, what: &str, lo: u32, hi: u32) -> Result<(), String> {
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (item, None),
        };
        if let Some(s) = step {
            match s.parse::<u32>() {
                Ok(n) if n > 0 => {}
                _ => return Err(format!("`{s}` is not a repetition step in `{text}`")),
            }
        }
        if range == "*" {
            continue;
        }
        let (a, b) = range.split_once("..").unwrap_or((range, range));
        for v in [a, b] {
            let n: u32 = v
                .parse()
                .map_err(|_| format!("`{v}` is not a number ({what}) in `{text}`"))?;
            if n < lo || n > hi {
                return Err(format!(
                    "{what} {n} is out of range ({lo} to {hi}) in `{text}`"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::check;

    #[test]
    fn valid_events() {
        for e in [
            "02:30",
            "sat 03:00",
            "mon..fri 22:00",
            "daily",
            "*:0/15",
            "mon,wed,fri 0/2:00",
            "*-*-01 04:00",
            "2030-01-01 00:00:00",
            "sun 01..05:00",
            "12,14,16:30",
        ] {
            assert!(check(e).is_ok(), "{e}: {:?}", check(e));
        }
    }

    #[test]
    fn invalid_events_say_why() {
        assert!(check("25:99").unwrap_err().contains("hour 25"));
        assert!(check("10:75").unwrap_err().contains("minute 75"));
        assert!(check("funday 10:00").unwrap_err().contains("funday"));
        assert!(check("*-13-01").unwrap_err().contains("month 13"));
        assert!(check("10:00/0").unwrap_err().contains("repetition"));
        assert!(check("1:2:3:4").unwrap_err().contains("not a time"));
    }
}
