//! The next run of a calendar event, as `GET /cluster/backup` reports it in `next-run`.
//!
//! pve-manager `PVE/API2/Backup.pm` `index` computes, for every vzdump job with a schedule,
//! `Proxmox::RS::CalendarEvent->new($schedule)->compute_next_event(time())`: the first
//! instant strictly after now that the event matches (proxmox-time
//! `src/calendar_event.rs`, `compute_next_event`). The grammar is proxmox-time's
//! `parse_calendar_event`: an optional weekday list (`mon`, `mon..fri`, `sat,sun`), an
//! optional date `[YEAR-]MONTH-DAY`, an optional time `HOUR:MINUTE[:SECOND]` (a lone
//! component without `:` is the minute), or a named event (`daily`, `weekly`, ...). Each
//! component is `*`, a value, a range `a..b`, a repetition `a/step` or `a..b/step`, or a
//! comma list of those. Omitted time components are 0 (seconds always default to 0).
//!
//! The simulated host runs on UTC, so "local time" is UTC here.

/// One component as the set of values it matches within `lo..=hi`.
fn component(text: &str, lo: u32, hi: u32) -> Option<Vec<bool>> {
    let mut set = vec![false; hi as usize + 1];
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, s.parse::<u32>().ok().filter(|n| *n > 0)?),
            None => (item, 0),
        };
        let (a, b) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once("..") {
            (a.parse().ok()?, b.parse().ok()?)
        } else {
            let a: u32 = range.parse().ok()?;
            // `a/step` repeats from a to the end of the range.
            (a, if step > 0 { hi } else { a })
        };
        if a < lo || b > hi || a > b {
            return None;
        }
        let step = step.max(1);
        let mut v = a;
        while v <= b {
            set[v as usize] = true;
            v += step;
        }
    }
    Some(set)
}

const DAYS: [(&str, &str); 7] = [
    ("mon", "monday"),
    ("tue", "tuesday"),
    ("wed", "wednesday"),
    ("thu", "thursday"),
    ("fri", "friday"),
    ("sat", "saturday"),
    ("sun", "sunday"),
];

fn weekday(name: &str) -> Option<usize> {
    DAYS.iter().position(|(s, l)| *s == name || *l == name)
}

/// Weekdays as a set indexed Monday = 0.
fn weekdays(text: &str) -> Option<[bool; 7]> {
    let mut set = [false; 7];
    for item in text.split(',') {
        match item.split_once("..") {
            Some((a, b)) => {
                let (a, b) = (weekday(a)?, weekday(b)?);
                let mut d = a;
                loop {
                    set[d] = true;
                    if d == b {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
            None => set[weekday(item)?] = true,
        }
    }
    Some(set)
}

/// A parsed calendar event.
struct Event {
    weekdays: [bool; 7],
    years: Option<Vec<bool>>,
    months: Vec<bool>,
    days: Vec<bool>,
    hours: Vec<bool>,
    minutes: Vec<bool>,
    seconds: Vec<bool>,
}

fn named(text: &str) -> Option<&'static str> {
    Some(match text {
        "minutely" => "*-*-* *:*:00",
        "hourly" => "*-*-* *:00:00",
        "daily" => "*-*-* 00:00:00",
        "weekly" => "mon *-*-* 00:00:00",
        "monthly" => "*-*-01 00:00:00",
        "yearly" | "annually" => "*-01-01 00:00:00",
        "quarterly" => "*-01,04,07,10-01 00:00:00",
        "semiannually" | "semi-annually" => "*-01,07-01 00:00:00",
        _ => return None,
    })
}

fn parse(text: &str) -> Option<Event> {
    let lower = text.trim().to_ascii_lowercase();
    let text = named(&lower).unwrap_or(&lower);
    let mut tokens: Vec<&str> = text.split_whitespace().collect();
    if tokens.is_empty() {
        return None;
    }
    let mut ev = Event {
        weekdays: [true; 7],
        years: None,
        months: component("*", 1, 12)?,
        days: component("*", 1, 31)?,
        hours: component("0", 0, 23)?,
        minutes: component("0", 0, 59)?,
        seconds: component("0", 0, 59)?,
    };
    if let Some(set) = weekdays(tokens[0]) {
        ev.weekdays = set;
        tokens.remove(0);
    }
    for tok in tokens {
        if tok.contains(':') {
            let parts: Vec<&str> = tok.split(':').collect();
            if parts.len() > 3 {
                return None;
            }
            ev.hours = component(parts[0], 0, 23)?;
            ev.minutes = component(parts[1], 0, 59)?;
            if let Some(s) = parts.get(2) {
                ev.seconds = component(s, 0, 59)?;
            }
        } else if tok.contains('-') {
            let parts: Vec<&str> = tok.split('-').collect();
            let (y, m, d) = match parts.as_slice() {
                [m, d] => (None, *m, *d),
                [y, m, d] => (Some(*y), *m, *d),
                _ => return None,
            };
            ev.years = match y {
                Some("*") | None => None,
                Some(y) => Some(component(y, 1970, 9999)?),
            };
            ev.months = component(m, 1, 12)?;
            ev.days = component(d, 1, 31)?;
        } else {
            // A lone component is the minute of every hour (`*/5`, `0/15`).
            ev.hours = component("*", 0, 23)?;
            ev.minutes = component(tok, 0, 59)?;
        }
    }
    Some(ev)
}

/// Civil date of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`).
pub(crate) fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The first time strictly after `now` (Unix seconds) that `schedule` matches, or `None`
/// when it does not parse or matches nothing in the next ten years.
pub fn next_event(schedule: &str, now: i64) -> Option<i64> {
    let ev = parse(schedule)?;
    let start_day = now.div_euclid(86_400);
    let start_sec = now.rem_euclid(86_400);
    for day in start_day..start_day + 3_660 {
        let (y, m, d) = civil(day);
        // 1970-01-01 was a Thursday (Monday = 0 makes it 3).
        let wd = (day + 3).rem_euclid(7) as usize;
        let year_ok = match &ev.years {
            None => true,
            Some(set) => usize::try_from(y)
                .ok()
                .and_then(|y| set.get(y).copied())
                .unwrap_or(false),
        };
        if !year_ok || !ev.months[m as usize] || !ev.days[d as usize] || !ev.weekdays[wd] {
            continue;
        }
        let after = if day == start_day { start_sec } else { -1 };
        for h in (0..24).filter(|h| ev.hours[*h]) {
            for mi in (0..60).filter(|mi| ev.minutes[*mi]) {
                for s in (0..60).filter(|s| ev.seconds[*s]) {
                    let t = (h * 3600 + mi * 60 + s) as i64;
                    if t > after {
                        return Some(day * 86_400 + t);
                    }
                }
            }
        }
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::next_event;

    // Mon 2026-12-07 01:00:00 UTC.
    const NOW: i64 = 1_796_605_200;

    #[test]
    fn weekly_time_is_the_next_sunday() {
        // Sun 2026-12-13 04:00 UTC, stable all week long.
        assert_eq!(next_event("sun 04:00", NOW), Some(1_797_134_400));
        assert_eq!(next_event("sun 04:00", NOW + 3_600), Some(1_797_134_400));
    }

    #[test]
    fn times_repetitions_and_named_events() {
        assert_eq!(next_event("02:30", NOW), Some(NOW + 5_400));
        assert_eq!(next_event("*/15", NOW), Some(NOW + 900));
        assert_eq!(next_event("*:0/15", NOW + 1), Some(NOW + 900));
        assert_eq!(next_event("daily", NOW), Some(NOW + 23 * 3600));
        assert_eq!(next_event("hourly", NOW), Some(NOW + 3600));
        // Tue 2026-12-08 00:00.
        assert_eq!(next_event("mon..fri 00:00", NOW), Some(NOW + 23 * 3600));
        // 2027-01-01 00:00 UTC.
        assert_eq!(next_event("monthly", NOW), Some(1_798_761_600));
        assert_eq!(next_event("*-01-01", NOW), Some(1_798_761_600));
        assert_eq!(next_event("2030-01-01 00:00:00", NOW), Some(1_893_456_000));
        assert_eq!(next_event("2020-01-01", NOW), None);
        assert_eq!(next_event("25:99", NOW), None);
        assert_eq!(next_event("", NOW), None);
    }
}
