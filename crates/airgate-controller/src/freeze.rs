//! Change freezes in the controller: an App's windows (`spec.freeze`)
//! checked, read in their time zones (the zone database is built in, so a
//! controller image without one reads them the same), and whether one is
//! in force now. The decision itself is `airgate_core::freeze`.

use airgate_core::freeze::{self, Active, Civil, Cron, Window};
use airgate_kube::app::{App, DriftMode};
use jiff::Timestamp;
use jiff::tz::TimeZone;

/// An App's freeze windows, checked.
#[derive(Debug, Default)]
pub struct Windows {
    windows: Vec<(Window, TimeZone)>,
    /// How each is shown: `window 1 (0 18 * * 5 for 62h, Europe/Stockholm)`.
    shown: Vec<String>,
}

/// `spec.freeze`, checked: errors name the window and the field.
pub fn windows(app: &App) -> Result<Windows, String> {
    let mut out = Windows::default();
    for (i, w) in app.spec.freeze.iter().enumerate() {
        let at = |field: &str| format!("spec.freeze[{i}].{field}");
        let window = match (&w.schedule, &w.from) {
            (Some(schedule), None) => {
                if w.to.is_some() {
                    return Err(format!(
                        "{}: a window has a schedule or from/to, not both",
                        at("to")
                    ));
                }
                let cron: Cron = schedule
                    .parse()
                    .map_err(|e| format!("{}: {e}", at("schedule")))?;
                let duration = w
                    .duration
                    .as_deref()
                    .ok_or_else(|| {
                        format!(
                            "{}: a recurring window needs a duration (62h)",
                            at("duration")
                        )
                    })
                    .and_then(|d| {
                        freeze::parse_duration(d).map_err(|e| format!("{}: {e}", at("duration")))
                    })?;
                let zone = w.time_zone.as_deref().unwrap_or("UTC");
                let tz = TimeZone::get(zone).map_err(|_| {
                    format!(
                        "{}: '{}' is not a time zone (an IANA name, like Europe/Stockholm)",
                        at("timeZone"),
                        airgate_core::text::shown(zone, 60)
                    )
                })?;
                out.shown.push(format!(
                    "window {} ({schedule} for {}, {zone})",
                    i + 1,
                    w.duration.as_deref().unwrap_or_default()
                ));
                (
                    Window::Recurring {
                        schedule: cron,
                        duration,
                    },
                    tz,
                )
            }
            (None, Some(from)) => {
                if w.duration.is_some() || w.time_zone.is_some() {
                    return Err(format!(
                        "spec.freeze[{i}]: a one-off window has from and to only"
                    ));
                }
                let instant = |field: &str, text: &str| {
                    text.parse::<Timestamp>()
                        .map(|t| t.as_second())
                        .map_err(|_| {
                            format!(
                                "{}: '{}' is not an RFC 3339 time",
                                at(field),
                                airgate_core::text::shown(text, 60)
                            )
                        })
                };
                let to =
                    w.to.as_deref()
                        .ok_or_else(|| format!("{}: a one-off window needs an end", at("to")))?;
                let (from_s, to_s) = (instant("from", from)?, instant("to", to)?);
                if to_s <= from_s {
                    return Err(format!("spec.freeze[{i}]: to is not after from"));
                }
                out.shown.push(format!("window {} ({from} to {to})", i + 1));
                (
                    Window::Once {
                        from: from_s,
                        to: to_s,
                    },
                    TimeZone::UTC,
                )
            }
            _ => {
                return Err(format!(
                    "spec.freeze[{i}]: give schedule and duration (recurring) or from and to (one-off)"
                ));
            }
        };
        out.windows.push(window);
    }
    Ok(out)
}

fn civil(tz: &TimeZone, utc: i64) -> Option<Civil> {
    let t = Timestamp::from_second(utc).ok()?.to_zoned(tz.clone());
    Some(Civil {
        minute: u8::try_from(t.minute()).ok()?,
        hour: u8::try_from(t.hour()).ok()?,
        day: u8::try_from(t.day()).ok()?,
        month: u8::try_from(t.month()).ok()?,
        weekday: u8::try_from(t.weekday().to_sunday_zero_offset()).ok()?,
    })
}

impl Windows {
    /// The freeze in force at `now` (seconds since the epoch), and how to
    /// name it.
    pub fn active(&self, now: i64) -> Option<(Active, &str)> {
        let readers: Vec<Box<dyn Fn(i64) -> Option<Civil> + '_>> = self
            .windows
            .iter()
            .map(|(_, tz)| Box::new(move |utc| civil(tz, utc)) as Box<dyn Fn(i64) -> Option<Civil>>)
            .collect();
        let pairs: Vec<(Window, freeze::Local)> = self
            .windows
            .iter()
            .zip(&readers)
            .map(|((w, _), r)| (w.clone(), r.as_ref() as freeze::Local))
            .collect();
        let active = freeze::active(&pairs, now)?;
        let shown = self
            .shown
            .get(active.window)
            .map(String::as_str)
            .unwrap_or("a window");
        Some((active, shown))
    }
}

/// What drift does now: during a freeze, `spec.freezeDrift` (default
/// correct); otherwise `spec.drift`.
pub fn drift_mode(app: &App, frozen: bool) -> DriftMode {
    match (frozen, app.spec.freeze_drift) {
        (true, Some(mode)) => mode,
        _ => app.spec.drift,
    }
}

/// The override reason a commit message carries (`Freeze-Override:`).
pub fn override_reason(message: &str) -> Option<String> {
    airgate_core::trust::trailers(message)
        .into_iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(freeze::OVERRIDE_TRAILER))
        .map(|(_, v)| v)
        .filter(|v| !v.trim().is_empty())
}

/// An RFC 3339 time for messages.
pub fn shown_time(epoch: i64) -> String {
    Timestamp::from_second(epoch)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| epoch.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use airgate_kube::app::FreezeWindow;

    fn app(freeze: Vec<FreezeWindow>) -> App {
        let mut app = App::new(
            "shop",
            serde_json::from_value(serde_json::json!({
                "source": {"url": "https://git.internal/x.git", "ref": {"branch": "main"}},
                "serviceAccountName": "deployer"
            }))
            .unwrap_or_else(|e| panic!("{e}")),
        );
        app.spec.freeze = freeze;
        app
    }

    #[test]
    fn windows_are_read_in_their_zone_and_errors_name_the_field() {
        let stockholm = app(vec![FreezeWindow {
            schedule: Some("0 18 * * 5".into()),
            duration: Some("62h".into()),
            time_zone: Some("Europe/Stockholm".into()),
            ..FreezeWindow::default()
        }]);
        let w = windows(&stockholm).unwrap_or_else(|e| panic!("{e}"));
        // Friday 2026-12-04 18:00 in Stockholm (CET, UTC+1) is 17:00 UTC.
        let start: i64 = "2026-12-04T17:00:00Z"
            .parse::<Timestamp>()
            .map(|t| t.as_second())
            .unwrap_or_default();
        assert_eq!(w.active(start - 1).map(|(a, _)| a.ends_at), None);
        let (active, shown) = w
            .active(start)
            .unwrap_or_else(|| panic!("not frozen at the start"));
        assert_eq!(active.ends_at, start + 62 * 3600);
        assert_eq!(shown, "window 1 (0 18 * * 5 for 62h, Europe/Stockholm)");
        for (bad, field) in [
            (
                FreezeWindow {
                    schedule: Some("0 18 * *".into()),
                    duration: Some("1h".into()),
                    ..Default::default()
                },
                "spec.freeze[0].schedule",
            ),
            (
                FreezeWindow {
                    schedule: Some("0 18 * * 5".into()),
                    ..Default::default()
                },
                "spec.freeze[0].duration",
            ),
            (
                FreezeWindow {
                    schedule: Some("0 18 * * 5".into()),
                    duration: Some("1h".into()),
                    time_zone: Some("Mars/Olympus".into()),
                    ..Default::default()
                },
                "spec.freeze[0].timeZone",
            ),
            (
                FreezeWindow {
                    from: Some("2026-12-20".into()),
                    to: Some("2027-01-04T00:00:00Z".into()),
                    ..Default::default()
                },
                "spec.freeze[0].from",
            ),
            (
                FreezeWindow {
                    from: Some("2027-01-04T00:00:00Z".into()),
                    to: Some("2026-12-20T00:00:00Z".into()),
                    ..Default::default()
                },
                "to is not after from",
            ),
            (FreezeWindow::default(), "give schedule and duration"),
        ] {
            let err = windows(&app(vec![bad])).err().unwrap_or_default();
            assert!(err.contains(field), "{err}");
        }
    }

    #[test]
    fn drift_follows_freeze_drift_only_during_a_freeze() {
        use DriftMode::{Correct, Warn};
        let table = [
            (Correct, None, false, Correct),
            (Correct, None, true, Correct),
            (Correct, Some(Warn), false, Correct),
            (Correct, Some(Warn), true, Warn),
            (Warn, Some(Correct), true, Correct),
            (Warn, None, true, Warn),
        ];
        for (drift, freeze_drift, frozen, want) in table {
            let mut a = app(Vec::new());
            a.spec.drift = drift;
            a.spec.freeze_drift = freeze_drift;
            assert_eq!(
                drift_mode(&a, frozen),
                want,
                "{drift:?} {freeze_drift:?} {frozen}"
            );
        }
    }

    #[test]
    fn the_override_trailer_is_read_from_the_message() {
        assert_eq!(
            override_reason(
                "fix the outage\n\nFreeze-Override: INC-42 payments down\nTicket: INC-42\n"
            ),
            Some("INC-42 payments down".into())
        );
        assert_eq!(
            override_reason("Freeze-Override: in the subject is not a trailer"),
            None
        );
        assert_eq!(override_reason("x\n\nFreeze-Override:\n"), None);
    }
}
