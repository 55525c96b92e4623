//! The retry flags `load` and `segment` (and `config`, to show their effect) take, and the
//! duration syntax they are written in.

use std::time::Duration;

use crate::settings::FlagValue;

/// How long a command keeps trying: the two resilience settings a person reaches for at a
/// terminal. The others (attempts, backoff, request size, breaker, rate limits) are `--config`
/// file properties.
#[derive(clap::Args, Debug, Clone, Default)]
pub(crate) struct RetryArgs {
    /// Give up on a request this long after its first attempt, retries included (e.g. 30s, 2m;
    /// property retry_time_limit_ms) [default: 5m]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) retry_time_limit: Option<Duration>,
    /// Deadline of one AppendRows round trip; a request without an answer by then is retried on a
    /// new connection (e.g. 500ms, 10s; property request_timeout_ms) [default: 60s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) request_timeout: Option<Duration>,
}

impl RetryArgs {
    /// Adds the settings these flags set to `flags`.
    pub(crate) fn push_flags(&self, flags: &mut Vec<FlagValue>) {
        if let Some(d) = self.retry_time_limit {
            flags.push(FlagValue::new("retry_time_limit_ms", "--retry-time-limit", millis(d)));
        }
        if let Some(d) = self.request_timeout {
            flags.push(FlagValue::new("request_timeout_ms", "--request-timeout", millis(d)));
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A duration as a number and a unit: `500ms`, `30s`, `1.5s`, `5m`, `1h`.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let expected = "expected a number and a unit: ms, s, m or h (e.g. 500ms, 30s, 5m)";
    let value: f64 = number.parse().map_err(|_| format!("`{text}`: {expected}"))?;
    let unit_ms = match unit.trim() {
        "ms" => 1.0,
        "s" => 1_000.0,
        "m" | "min" => 60_000.0,
        "h" => 3_600_000.0,
        "" => return Err(format!("`{text}`: no unit; {expected}")),
        other => return Err(format!("`{text}`: unknown unit `{other}`; {expected}")),
    };
    let ms = (value * unit_ms).round();
    if !ms.is_finite() || ms > u64::MAX as f64 {
        return Err(format!("`{text}` is too long"));
    }
    Ok(Duration::from_millis(ms as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_with_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1_500)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration(" 2h "), Ok(Duration::from_secs(7_200)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        for bad in ["30", "", "s", "-1s", "1.2.3s", "10 days", "1e3s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert!(parse_duration("3x").is_err_and(|e| e.contains("unknown unit `x`")));
    }

    #[test]
    fn flags_set_the_millisecond_properties() {
        let args = RetryArgs {
            retry_time_limit: Some(Duration::from_secs(2)),
            request_timeout: Some(Duration::from_millis(500)),
        };
        let mut flags = Vec::new();
        args.push_flags(&mut flags);
        let s = crate::settings::resolve(None, &|_| None, &flags).expect("resolves");
        assert_eq!((s.config.retry_time_limit_ms, s.config.request_timeout_ms), (2_000, 500));
        assert_eq!(s.source("request_timeout_ms"), crate::settings::Source::Flag("--request-timeout"));
    }
}
