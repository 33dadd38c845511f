//! humantime's duration syntax (`7d`, `1h 30m`, `1.5h`), parsed one `<number><unit>`
//! piece at a time and summed with checked arithmetic. humantime 2.4's
//! `parse_duration` panics instead of returning `NumberOverflow` when its pieces
//! add up to `u64::MAX` seconds and a carried second (chronotope/humantime#66, open;
//! found by the `flags` fuzz target): a flag value must not crash the manager. One
//! piece alone never reaches that carry, so each is parsed by humantime itself.

use std::time::Duration;

use humantime::DurationError;

/// A duration in humantime's syntax; an error, never a panic, for any input.
pub fn parse(value: &str) -> Result<Duration, DurationError> {
    let pieces = pieces(value);
    if pieces.is_empty() {
        return humantime::parse_duration(value);
    }
    pieces.into_iter().try_fold(Duration::ZERO, |total, piece| {
        total
            .checked_add(humantime::parse_duration(piece)?)
            .ok_or(DurationError::NumberOverflow)
    })
}

/// `value` cut where humantime starts a new piece: after a unit's letters, at the
/// next whitespace or digit. Whatever a piece holds besides is left for humantime
/// to refuse.
fn pieces(value: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let (mut start, mut in_unit) = (0, false);
    for (at, c) in value.char_indices() {
        if in_unit && (c.is_ascii_digit() || c.is_whitespace()) {
            pieces.push(&value[start..at]);
            (start, in_unit) = (at, false);
        } else if c.is_ascii_alphabetic() || c == 'µ' {
            in_unit = true;
        }
    }
    let last = &value[start..];
    if !last.trim().is_empty() {
        pieces.push(last);
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_add_up_as_humantime_adds_them() {
        for value in [
            "7d",
            "1h30m",
            "1h 30m",
            "1.5h",
            "2s",
            "300ms",
            "1 0s",
            "1w 2d 3h4m5s 6ms7us8ns",
        ] {
            assert_eq!(
                parse(value).ok(),
                humantime::parse_duration(value).ok(),
                "{value:?}"
            );
        }
    }

    #[test]
    fn what_humantime_refuses_is_refused() {
        for value in ["", " ", "7", "d", "7x", "1h-30m", "1.2.3s", "-1s", "1h,30m"] {
            assert!(parse(value).is_err(), "{value:?}");
            assert!(humantime::parse_duration(value).is_err(), "{value:?}");
        }
    }

    /// The `flags` fuzz target's crash (fuzz/regressions/flags/): u64::MAX - 1
    /// seconds and 0.6 s, then 0.8 s, then 0.6 s carrying exactly one second.
    #[test]
    fn pieces_that_overflow_together_are_an_error_not_a_panic() {
        for value in [
            "18446744073709551614.6s 0.8s0.6s",
            "18446744073709551615s 1000000000ns",
            "18446744073709551615s 999999999ns 1ns",
        ] {
            assert!(
                matches!(parse(value), Err(DurationError::NumberOverflow)),
                "{value:?}"
            );
        }
    }
}
