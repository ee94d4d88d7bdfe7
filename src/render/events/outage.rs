//! The backup server's outage cards: unreachable (with the reason and what to do about it)
//! and answering again (how long it was down and which dates were caught up).

use super::{COLOUR_FAILURE, COLOUR_SUCCESS};
use crate::event::OutageReason;
use crate::render::embed::{Embed, EmbedField};
use crate::render::text::{escaped_or_dash, format_duration, format_time};
use crate::render::times::{discord_time, discord_time_ago};
use crate::render::RenderOptions;
use chrono::{DateTime, Utc};

pub(super) fn cbs_unreachable(
    since: DateTime<Utc>,
    reason: OutageReason,
    error: &str,
    again_after: Option<DateTime<Utc>>,
    opts: &RenderOptions,
) -> Embed {
    let (title, advice) = match reason {
        OutageReason::Unreachable => (
            "Backup server unreachable",
            "restorewatch keeps trying every cycle and posts once it answers again. \
             Jobs that end meanwhile are reported then.",
        ),
        OutageReason::AuthFailed => (
            "Backup server rejects the API password",
            "Check the API (system) user name and password restorewatch is configured with, \
             and that the user has the Admin, API or Read-Only API role in CBS.",
        ),
        OutageReason::PasswordExpired => (
            "Backup server API password expired",
            "The API user's password has expired in CBS, so no restore jobs can be checked. \
             Change the API user's password in CBS (web console, system users), then put \
             the new password into restorewatch's configuration.",
        ),
    };
    Embed {
        title: title.to_owned(),
        description: match again_after {
            None => format!("Since {}. {advice}", discord_time_ago(since)),
            Some(answered) => format!(
                "Since {}, again: it had answered again {} (it keeps going down and back; \
                 no ping for this one). {advice}",
                discord_time_ago(since),
                discord_time_ago(answered)
            ),
        },
        colour: COLOUR_FAILURE,
        fields: vec![EmbedField::new(
            "Error",
            escaped_or_dash(Some(error)),
            false,
        )],
        footer: Some(format!(
            "Since {}",
            format_time(&since.with_timezone(&opts.timezone))
        )),
        timestamp: Some(since),
    }
}

/// The answering-again card, worded by why the server counted as down: a rejected or
/// expired password is no network outage (`None`: an event queued before the reason was
/// kept).
pub(super) fn cbs_recovered(
    down_since: DateTime<Utc>,
    recovered_at: DateTime<Utc>,
    caught_up: &[chrono::NaiveDate],
    reason: Option<OutageReason>,
    opts: &RenderOptions,
) -> Embed {
    let zone = |at: DateTime<Utc>| format_time(&at.with_timezone(&opts.timezone));
    let caught_up = if caught_up.is_empty() {
        "No earlier date needed catching up.".to_owned()
    } else {
        let dates: Vec<String> = caught_up.iter().map(|d| d.to_string()).collect();
        format!("Caught up on {}.", dates.join(", "))
    };
    let was = match reason {
        Some(OutageReason::Unreachable) => "It was unreachable",
        Some(OutageReason::AuthFailed) => "It rejected the API password",
        Some(OutageReason::PasswordExpired) => "Its API password was expired",
        None => "It was down",
    };
    Embed {
        title: "Backup server answers again".to_owned(),
        description: format!(
            "{was} for {}, from {} to {}. {caught_up} Jobs that ended \
             meanwhile are reported as the cycles pick them up.",
            format_duration((recovered_at - down_since).num_seconds()),
            discord_time(down_since),
            discord_time(recovered_at),
        ),
        colour: COLOUR_SUCCESS,
        footer: Some(format!(
            "Down from {} to {}",
            zone(down_since),
            zone(recovered_at)
        )),
        timestamp: Some(recovered_at),
        ..Embed::default()
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{one, utc};
    use super::*;
    use crate::event::EventKind;
    use crate::test_data::field_value;
    use chrono::NaiveDate;

    #[test]
    fn expired_password_says_what_to_do() {
        let e = one(EventKind::CbsUnreachable {
            server: None,
            since: utc(6, 0, 0),
            reason: OutageReason::PasswordExpired,
            error: "Your password has expired".into(),
            again_after: None,
        });
        assert_eq!(e.title, "Backup server API password expired");
        assert!(e
            .description
            .starts_with("Since <t:1719381600:f> (<t:1719381600:R>). "));
        assert_eq!(
            e.footer.as_deref(),
            Some("Since 2024-06-26 08:00:00 (CEST)")
        );
        assert!(e
            .description
            .contains("Change the API user's password in CBS"));
        assert_eq!(field_value(&e, "Error"), "Your password has expired");
        assert_eq!(e.colour, COLOUR_FAILURE);
    }

    #[test]
    fn an_outage_soon_after_the_last_says_so() {
        let e = one(EventKind::CbsUnreachable {
            server: None,
            since: utc(6, 0, 0),
            reason: OutageReason::Unreachable,
            error: "HTTP 502".into(),
            again_after: Some(utc(5, 50, 0)),
        });
        assert!(
            e.description.contains(", again: it had answered again <t:")
                && e.description.contains("no ping for this one"),
            "{}",
            e.description
        );
    }

    #[test]
    fn outage_reasons_have_their_own_titles() {
        let title = |reason| {
            one(EventKind::CbsUnreachable {
                server: None,
                since: utc(6, 0, 0),
                reason,
                error: "x".into(),
                again_after: None,
            })
            .title
        };
        assert_eq!(
            title(OutageReason::Unreachable),
            "Backup server unreachable"
        );
        assert_eq!(
            title(OutageReason::AuthFailed),
            "Backup server rejects the API password"
        );
    }

    #[test]
    fn recovered_notice_tells_the_outage_length() {
        let e = one(EventKind::CbsRecovered {
            server: None,
            down_since: utc(9, 58, 0),
            recovered_at: utc(11, 0, 0),
            caught_up: vec![
                NaiveDate::from_ymd_opt(2024, 6, 24).unwrap(),
                NaiveDate::from_ymd_opt(2024, 6, 25).unwrap(),
            ],
            reason: Some(OutageReason::Unreachable),
        });
        assert_eq!(e.title, "Backup server answers again");
        assert!(e.description.starts_with(
            "It was unreachable for 1h 02m, from <t:1719395880:f> to <t:1719399600:f>. \
             Caught up on 2024-06-24, 2024-06-25."
        ));
        assert_eq!(
            e.footer.as_deref(),
            Some("Down from 2024-06-26 11:58:00 (CEST) to 2024-06-26 13:00:00 (CEST)")
        );
        assert_eq!(e.colour, COLOUR_SUCCESS);
    }

    /// A rejected or expired password is no network outage, and the card says which it
    /// was; an event queued before the reason was kept says "down".
    #[test]
    fn recovered_notice_words_the_outage_by_its_reason() {
        let description = |reason| {
            one(EventKind::CbsRecovered {
                server: None,
                down_since: utc(10, 59, 35),
                recovered_at: utc(11, 0, 0),
                caught_up: vec![],
                reason,
            })
            .description
        };
        for (reason, start) in [
            (
                Some(OutageReason::AuthFailed),
                "It rejected the API password for 25s,",
            ),
            (
                Some(OutageReason::PasswordExpired),
                "Its API password was expired for 25s,",
            ),
            (
                Some(OutageReason::Unreachable),
                "It was unreachable for 25s,",
            ),
            (None, "It was down for 25s,"),
        ] {
            let text = description(reason);
            assert!(text.starts_with(start), "{reason:?}: {text}");
        }
        let old: EventKind = serde_json::from_value(serde_json::json!({
            "type": "cbs_recovered", "down_since": "2024-06-26T08:59:35Z",
            "recovered_at": "2024-06-26T09:00:00Z"
        }))
        .unwrap();
        assert!(matches!(old, EventKind::CbsRecovered { reason: None, .. }));
    }
}
