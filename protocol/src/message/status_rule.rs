//! The one rule for status updates: who may say which status about which
//! kind of message, after which earlier status. A node applies it to the
//! updates its operator sends and to those a peer sends it, so both sides
//! of a request keep the same history.

use super::{BusinessStatus, InvalidTransition, MessageKind};

/// The two parties to a message, seen from the one sending a status update
/// about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// Sent the original message: the requester (of information, its
    /// provider).
    Sender,
    /// Received the original message: the requested authority.
    Recipient,
}

/// Why a status update is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatusRefusal {
    #[error("spontaneous information is acknowledged (status acknowledged), not {status}")]
    InformationIsAcknowledged { status: &'static str },
    #[error(
        "acknowledged is for spontaneous information; a request is registered instead (status registered with a reference)"
    )]
    RequestIsRegistered,
    #[error("status updates are about requests and spontaneous information, not {}", with_article(.kind.name()))]
    NoStatusForKind { kind: MessageKind },
    #[error("only the requesting authority can withdraw its request")]
    OnlyRequesterWithdraws,
    #[error("only the receiving authority reports {status}; the requester may only withdraw")]
    OnlyRecipientReports { status: &'static str },
    #[error("invalid transition: {0}")]
    Transition(#[from] InvalidTransition),
}

/// Whether `side` may send `status` about a message of `kind` whose latest
/// status is `previous` (`None` if it has none yet):
///
/// * spontaneous information is only ever acknowledged, and only requests
///   carry the other statuses (UNCAC art. 46(5): the receiver acknowledges
///   the restrictions; art. 46(13): the requester follows its request);
/// * the requester (the sender of the original) only withdraws; the
///   recipient reports everything else;
/// * the status may follow the previous one ([`BusinessStatus::may_follow`]).
pub fn check_status(
    kind: MessageKind,
    side: Side,
    previous: Option<&BusinessStatus>,
    status: &BusinessStatus,
) -> Result<(), StatusRefusal> {
    match (kind, status) {
        (MessageKind::SpontaneousInformation, BusinessStatus::Acknowledged) => {}
        (MessageKind::SpontaneousInformation, s) => {
            return Err(StatusRefusal::InformationIsAcknowledged { status: s.name() })
        }
        (MessageKind::Request, BusinessStatus::Acknowledged) => {
            return Err(StatusRefusal::RequestIsRegistered)
        }
        (MessageKind::Request, _) => {}
        (kind, _) => return Err(StatusRefusal::NoStatusForKind { kind }),
    }
    match (side, status.sent_by_requester()) {
        (Side::Recipient, true) => return Err(StatusRefusal::OnlyRequesterWithdraws),
        (Side::Sender, false) => {
            return Err(StatusRefusal::OnlyRecipientReports {
                status: status.name(),
            })
        }
        _ => {}
    }
    Ok(status.may_follow(previous)?)
}

/// "a request", "an info".
fn with_article(noun: &str) -> String {
    let vowel = noun.starts_with(['a', 'e', 'i', 'o', 'u']);
    format!("{} {noun}", if vowel { "an" } else { "a" })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registered() -> BusinessStatus {
        BusinessStatus::Registered {
            reference: "R-1".into(),
        }
    }

    #[test]
    fn the_recipient_registers_and_executes_a_request() {
        let r = Side::Recipient;
        assert_eq!(
            check_status(MessageKind::Request, r, None, &registered()),
            Ok(())
        );
        assert_eq!(
            check_status(
                MessageKind::Request,
                r,
                Some(&registered()),
                &BusinessStatus::Executed
            ),
            Ok(())
        );
    }

    #[test]
    fn only_the_requester_withdraws() {
        let w = BusinessStatus::Withdrawn;
        assert_eq!(
            check_status(MessageKind::Request, Side::Sender, None, &w),
            Ok(())
        );
        assert_eq!(
            check_status(MessageKind::Request, Side::Recipient, None, &w),
            Err(StatusRefusal::OnlyRequesterWithdraws)
        );
        assert_eq!(
            check_status(MessageKind::Request, Side::Sender, None, &registered()),
            Err(StatusRefusal::OnlyRecipientReports {
                status: "registered"
            })
        );
    }

    #[test]
    fn information_is_only_acknowledged_by_its_recipient() {
        let info = MessageKind::SpontaneousInformation;
        let ack = BusinessStatus::Acknowledged;
        assert_eq!(check_status(info, Side::Recipient, None, &ack), Ok(()));
        assert!(matches!(
            check_status(info, Side::Sender, None, &ack),
            Err(StatusRefusal::OnlyRecipientReports { .. })
        ));
        for s in [
            registered(),
            BusinessStatus::Withdrawn,
            BusinessStatus::Executed,
        ] {
            assert!(matches!(
                check_status(info, Side::Recipient, None, &s),
                Err(StatusRefusal::InformationIsAcknowledged { .. })
            ));
        }
        assert_eq!(
            check_status(MessageKind::Request, Side::Recipient, None, &ack),
            Err(StatusRefusal::RequestIsRegistered)
        );
    }

    #[test]
    fn other_kinds_carry_no_status() {
        for kind in [
            MessageKind::StatusUpdate,
            MessageKind::Reply,
            MessageKind::Consultation,
        ] {
            for side in [Side::Sender, Side::Recipient] {
                let e = check_status(kind, side, None, &BusinessStatus::Withdrawn).unwrap_err();
                assert_eq!(e, StatusRefusal::NoStatusForKind { kind });
            }
        }
        let e = check_status(
            MessageKind::Reply,
            Side::Recipient,
            None,
            &BusinessStatus::Executed,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "status updates are about requests and spontaneous information, not a reply"
        );
    }

    #[test]
    fn the_transition_is_checked_last() {
        let e = check_status(
            MessageKind::Request,
            Side::Recipient,
            Some(&BusinessStatus::Executed),
            &BusinessStatus::InExecution,
        )
        .unwrap_err();
        assert!(matches!(e, StatusRefusal::Transition(_)), "{e:?}");
        // The side is checked before the history: a withdrawal by the
        // recipient is refused as such even after a final status.
        assert_eq!(
            check_status(
                MessageKind::Request,
                Side::Recipient,
                Some(&BusinessStatus::Executed),
                &BusinessStatus::Withdrawn,
            ),
            Err(StatusRefusal::OnlyRequesterWithdraws)
        );
    }
}
