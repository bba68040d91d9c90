//! Change freezes: windows in which an App applies no new revision.
//!
//! A window is recurring (a cron schedule for when it starts, a duration,
//! a time zone) or one-off (from, to). Whether `now` is in one is a pure
//! function of the windows, the instant and a way to read an instant as
//! local wall-clock time in the window's zone ([`Local`]): the controller
//! gives it the real zone database, the tests a fake one.
//!
//! Guarantees: a window covers `[start, start + duration)` (its end is not
//! in it, so a revision pending at the end is applied then); a recurring
//! window that began before `now` and lasts past it is found however long
//! ago it began (up to [`MAX_DURATION`]); overlapping windows end when the
//! last of them does.

use std::fmt;

/// The longest a window may last: a freeze is a release period, not a
/// way to switch an App off (that is `suspend`).
pub const MAX_DURATION: i64 = 31 * 24 * 3600;

/// The override trailer: a commit carrying it is applied during a freeze.
pub const OVERRIDE_TRAILER: &str = "Freeze-Override";

/// A wall-clock minute in some zone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Civil {
    pub minute: u8,
    pub hour: u8,
    /// 1-31
    pub day: u8,
    /// 1-12
    pub month: u8,
    /// 0 (Sunday) - 6
    pub weekday: u8,
}

/// Reads a UTC instant (seconds since the epoch) as wall-clock time.
pub type Local<'a> = &'a dyn Fn(i64) -> Option<Civil>;

/// A standard five-field cron schedule: minute, hour, day of month, month,
/// day of week (0-7, Sunday is 0 and 7). Fields take `*`, `N`, `A-B`,
/// lists `A,B` and steps `*/S`, `A-B/S`. When both day fields are
/// restricted, either matching is enough (as cron does).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    days_any: bool,
    weekdays_any: bool,
    text: String,
}

impl fmt::Display for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn field(text: &str, name: &str, min: u32, max: u32) -> Result<u64, String> {
    let mut bits = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse::<u32>()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("{name}: step '{s}' is not a positive number"))?,
            ),
            None => (part, 1),
        };
        let number = |t: &str| {
            t.parse::<u32>()
                .ok()
                .filter(|n| (min..=max).contains(n))
                .ok_or_else(|| format!("{name}: '{t}' is not a number from {min} to {max}"))
        };
        let (lo, hi) = match range {
            "*" => (min, max),
            r => match r.split_once('-') {
                Some((a, b)) => (number(a)?, number(b)?),
                None if step > 1 => (number(r)?, max),
                None => (number(r)?, number(r)?),
            },
        };
        if lo > hi {
            return Err(format!("{name}: '{range}' runs backwards"));
        }
        let mut v = lo;
        while v <= hi {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok(bits)
}

impl std::str::FromStr for Cron {
    type Err = String;

    fn from_str(text: &str) -> Result<Cron, String> {
        let parts: Vec<&str> = text.split_whitespace().collect();
        let [m, h, dom, mon, dow] = parts[..] else {
            return Err(format!(
                "'{}' is not a cron schedule of five fields (minute hour day-of-month month day-of-week)",
                crate::text::shown(text, 100)
            ));
        };
        let mut weekdays = field(dow, "day of week", 0, 7)?;
        if weekdays & (1 << 7) != 0 {
            weekdays |= 1;
        }
        Ok(Cron {
            minutes: field(m, "minute", 0, 59)?,
            hours: field(h, "hour", 0, 23)?,
            days: field(dom, "day of month", 1, 31)?,
            months: field(mon, "month", 1, 12)?,
            weekdays,
            days_any: dom == "*",
            weekdays_any: dow == "*",
            text: parts.join(" "),
        })
    }
}

impl Cron {
    /// Whether a window starts at this minute.
    pub fn matches(&self, t: &Civil) -> bool {
        let has = |bits: u64, v: u8| bits & (1 << v) != 0;
        let day = has(self.days, t.day);
        let weekday = has(self.weekdays, t.weekday);
        let day_ok = match (self.days_any, self.weekdays_any) {
            (true, true) => true,
            (false, true) => day,
            (true, false) => weekday,
            (false, false) => day || weekday,
        };
        has(self.minutes, t.minute)
            && has(self.hours, t.hour)
            && has(self.months, t.month)
            && day_ok
    }
}

/// One freeze window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Window {
    /// Starts whenever `schedule` matches (in its zone), lasts `duration`
    /// seconds.
    Recurring { schedule: Cron, duration: i64 },
    /// From one instant to another (seconds since the epoch).
    Once { from: i64, to: i64 },
}

/// The freeze in force: which window (its index in the spec) and when it
/// ends (seconds since the epoch).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Active {
    pub window: usize,
    pub ends_at: i64,
}

/// Whether `now` is in one of `windows`, each read in its own zone
/// (`zones[i]`); the window that ends last when several are.
pub fn active(windows: &[(Window, Local)], now: i64) -> Option<Active> {
    let mut found: Option<Active> = None;
    for (i, (window, local)) in windows.iter().enumerate() {
        let end = match window {
            Window::Once { from, to } => (*from <= now && now < *to).then_some(*to),
            Window::Recurring { schedule, duration } => {
                recurring_end(schedule, (*duration).min(MAX_DURATION), now, *local)
            }
        };
        if let Some(ends_at) = end
            && found.as_ref().is_none_or(|f| ends_at > f.ends_at)
        {
            found = Some(Active { window: i, ends_at });
        }
    }
    found
}

/// The end of the latest start of `schedule` within `duration` before
/// `now` (`now` itself included), if that end is after `now`.
fn recurring_end(schedule: &Cron, duration: i64, now: i64, local: Local) -> Option<i64> {
    let minute = now - now.rem_euclid(60);
    let mut start = minute;
    while start > now - duration {
        if local(start).is_some_and(|t| schedule.matches(&t)) {
            let end = start + duration;
            return (end > now).then_some(end);
        }
        start -= 60;
    }
    None
}

/// A duration as `62h`, `90m`, `2d`, `1h30m` or `45s`: seconds.
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let bad = || {
        format!(
            "'{}' is not a duration (like 62h, 90m, 2d, 1h30m)",
            crate::text::shown(text, 60)
        )
    };
    let mut total: i64 = 0;
    let mut digits = String::new();
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            'd' => 86_400,
            'h' => 3_600,
            'm' => 60,
            's' => 1,
            _ => return Err(bad()),
        };
        let n: i64 = digits.parse().map_err(|_| bad())?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
        digits.clear();
    }
    if !digits.is_empty() || total <= 0 {
        return Err(bad());
    }
    if total > MAX_DURATION {
        return Err(format!(
            "{text} is longer than a freeze may last (31 days); to stop an App, use spec.suspend"
        ));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake zone: UTC shifted by `offset` seconds, with the real
    /// calendar (days since 1970-01-01, a Thursday).
    fn zone(offset: i64) -> impl Fn(i64) -> Option<Civil> {
        move |utc: i64| {
            let t = utc + offset;
            let days = t.div_euclid(86_400);
            let secs = t.rem_euclid(86_400);
            // Civil from days (Howard Hinnant's algorithm).
            let z = days + 719_468;
            let era = z.div_euclid(146_097);
            let doe = z - era * 146_097;
            let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
            let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
            let mp = (5 * doy + 2) / 153;
            let day = doy - (153 * mp + 2) / 5 + 1;
            let month = if mp < 10 { mp + 3 } else { mp - 9 };
            Some(Civil {
                minute: ((secs / 60) % 60) as u8,
                hour: (secs / 3600) as u8,
                day: day as u8,
                month: month as u8,
                weekday: (days + 4).rem_euclid(7) as u8,
            })
        }
    }

    /// 2026-12-04 is a Friday.
    const FRIDAY_1800_UTC: i64 = 1_796_407_200;

    #[test]
    fn cron_fields_parse_and_match_as_cron_does() {
        let utc = zone(0);
        let friday_18 = utc(FRIDAY_1800_UTC).unwrap_or(Civil {
            minute: 99,
            hour: 99,
            day: 0,
            month: 0,
            weekday: 9,
        });
        assert_eq!(
            (
                friday_18.hour,
                friday_18.minute,
                friday_18.weekday,
                friday_18.day,
                friday_18.month
            ),
            (18, 0, 5, 4, 12)
        );
        let table = [
            ("0 18 * * 5", true),
            ("0 18 * * 7", false),
            ("0 18 * * 1-5", true),
            ("*/15 18 * * *", true),
            ("0 18 4 * 1", true), // day of month or weekday
            ("0 18 5 * 1", false),
            ("0 18 5 * 5", true),
            ("0 9-17 * * *", false),
            ("0 0,6,12,18 * 12 *", true),
            ("0 18 * 1-11 *", false),
        ];
        for (text, want) in table {
            let cron: Cron = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(cron.matches(&friday_18), want, "{text}");
        }
        let sunday = Civil {
            minute: 0,
            hour: 0,
            day: 6,
            month: 12,
            weekday: 0,
        };
        for text in ["0 0 * * 7", "0 0 * * 0"] {
            let cron: Cron = text.parse().unwrap_or_else(|e| panic!("{e}"));
            assert!(cron.matches(&sunday), "{text}: Sunday is 0 and 7");
        }
        for bad in [
            "0 18 * *",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * * 13 *",
            "* * * * 8",
            "5-1 * * * *",
            "*/0 * * * *",
            "x * * * *",
        ] {
            assert!(bad.parse::<Cron>().is_err(), "{bad}");
        }
    }

    #[test]
    fn windows_hold_from_their_start_until_just_before_their_end() {
        let utc = zone(0);
        let friday: Cron = "0 18 * * 5".parse().unwrap_or_else(|e| panic!("{e}"));
        let weekend = Window::Recurring {
            schedule: friday,
            duration: 62 * 3600,
        };
        let windows = [(weekend, &utc as Local)];
        let start = FRIDAY_1800_UTC;
        let end = start + 62 * 3600;
        let table = [
            ("a minute before it starts", start - 60, None),
            ("at its start", start, Some(end)),
            ("seconds into it", start + 59, Some(end)),
            ("Sunday night", start + 54 * 3600, Some(end)),
            ("a second before its end", end - 1, Some(end)),
            ("at its end", end, None),
            (
                "the next Friday",
                start + 7 * 86_400 + 1,
                Some(end + 7 * 86_400),
            ),
        ];
        for (case, now, want) in table {
            assert_eq!(active(&windows, now).map(|a| a.ends_at), want, "{case}");
        }
    }

    #[test]
    fn a_window_is_read_in_its_own_time_zone() {
        // 18:00 in a zone one hour ahead of UTC is 17:00 UTC.
        let stockholm = zone(3600);
        let friday: Cron = "0 18 * * 5".parse().unwrap_or_else(|e| panic!("{e}"));
        let windows = [(
            Window::Recurring {
                schedule: friday,
                duration: 3600,
            },
            &stockholm as Local,
        )];
        assert_eq!(
            active(&windows, FRIDAY_1800_UTC - 3600).map(|a| a.ends_at),
            Some(FRIDAY_1800_UTC)
        );
        assert_eq!(active(&windows, FRIDAY_1800_UTC), None);
    }

    #[test]
    fn one_off_and_overlapping_windows_end_when_the_last_ends() {
        let utc = zone(0);
        let once = Window::Once {
            from: 1000,
            to: 5000,
        };
        let later = Window::Once {
            from: 4000,
            to: 9000,
        };
        let windows = [(once, &utc as Local), (later, &utc as Local)];
        assert_eq!(active(&windows, 999), None);
        assert_eq!(
            active(&windows, 1000),
            Some(Active {
                window: 0,
                ends_at: 5000
            })
        );
        assert_eq!(
            active(&windows, 4500),
            Some(Active {
                window: 1,
                ends_at: 9000
            })
        );
        assert_eq!(active(&windows, 9000), None);
    }

    #[test]
    fn durations_parse_and_are_bounded() {
        for (text, want) in [
            ("62h", 223_200),
            ("90m", 5400),
            ("2d", 172_800),
            ("1h30m", 5400),
            ("45s", 45),
        ] {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
        for bad in ["", "0h", "h", "5", "1w", "32d", "-1h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
