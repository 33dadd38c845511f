//! The flags of Kamaji's `kamaji manager` that kamaji-rs has no use for, so a
//! Kamaji Deployment (its Helm chart, `extraArgs`, GitOps overlays) starts
//! kamaji-rs unchanged. Flags kamaji-rs shares with Kamaji under the same name
//! (`--metrics-bind-address`, `--leader-elect`, `--datastore`, ...) live in
//! [`ManagerArgs`](super::manager::ManagerArgs); the `--zap-*` logging flags
//! are mapped onto kamaji-rs' logging; the rest is accepted, validated as
//! Kamaji validates it, and named once at startup as unused.
//!
//! Values follow Go's flag syntax: booleans as `strconv.ParseBool` reads them
//! (`--disable-telemetry`, `=true`, `=1`, `=F`), durations as
//! `time.ParseDuration` (`30s`, `1h30m`, `1.5h`) as well as humantime (`7d`).

use std::time::Duration;

use clap::Args;

use super::telemetry::LogFormat;

/// Kamaji's manager flags without a kamaji-rs counterpart. Every field is
/// `None` unless given, so the startup line names exactly what was passed.
#[derive(Args, Debug, Clone, Default, PartialEq)]
pub struct KamajiFlags {
    /// Kamaji: address of the pprof profiler (default: off). Unused: kamaji-rs has no profiler endpoint.
    #[arg(
        long,
        value_name = "ADDRESS",
        help_heading = "Kamaji compatibility (accepted, unused)"
    )]
    pub pprof_bind_address: Option<String>,
    /// Kamaji: directory for temporary files (default /tmp/kamaji). Unused: kamaji-rs writes no files.
    #[arg(long, value_name = "DIR", value_parser = non_empty, help_heading = "Kamaji compatibility (accepted, unused)")]
    pub tmp_directory: Option<String>,
    /// Kamaji: image of the kine sidecar for SQL and NATS DataStores. Unused: kamaji-rs runs no kine.
    #[arg(long, value_name = "IMAGE", value_parser = non_empty, help_heading = "Kamaji compatibility (accepted, unused)")]
    pub kine_image: Option<String>,
    /// Kamaji: image of the DataStore migration Job. Unused: kamaji-rs does not migrate DataStores.
    #[arg(long, value_name = "IMAGE", value_parser = non_empty, help_heading = "Kamaji compatibility (accepted, unused)")]
    pub migrate_image: Option<String>,
    /// Kamaji: Service of its webhook server. Unused: kamaji-rs serves no webhooks.
    #[arg(long, value_name = "NAME", value_parser = non_empty, help_heading = "Kamaji compatibility (accepted, unused)")]
    pub webhook_service_name: Option<String>,
    /// Kamaji: CA of its webhook server. Unused: kamaji-rs serves no webhooks.
    #[arg(long, value_name = "PATH", value_parser = non_empty, help_heading = "Kamaji compatibility (accepted, unused)")]
    pub webhook_ca_path: Option<String>,
    /// Kamaji: its own ServiceAccount, for migration Jobs. Unused.
    #[arg(long, value_name = "NAME", value_parser = non_empty, help_heading = "Kamaji compatibility (accepted, unused)")]
    pub serviceaccount_name: Option<String>,
    /// Kamaji: timeout of one reconcile (default 30s). Unused: kamaji-rs bounds each API call instead.
    #[arg(long, value_name = "DURATION", value_parser = positive_duration, help_heading = "Kamaji compatibility (accepted, unused)")]
    pub controller_reconcile_timeout: Option<Duration>,
    /// Kamaji: controller-runtime's cache resync period (default 10h). Unused: kamaji-rs requeues at deadlines.
    #[arg(long, value_name = "DURATION", value_parser = go_duration, help_heading = "Kamaji compatibility (accepted, unused)")]
    pub cache_resync_period: Option<Duration>,
    /// Kamaji: switch off its analytics. kamaji-rs sends no telemetry at all.
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = go_bool,
        help_heading = "Kamaji compatibility (accepted, unused)"
    )]
    pub disable_telemetry: Option<bool>,

    /// Kamaji (zap): development logging. Here: log level debug unless --zap-log-level is given.
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = go_bool,
        help_heading = "Logging"
    )]
    pub zap_devel: Option<bool>,
    /// Kamaji (zap): `json` or `console`. Here: overrides --log-format (console = text).
    #[arg(long, value_name = "ENCODER", value_parser = ["json", "console"], help_heading = "Logging")]
    pub zap_encoder: Option<String>,
    /// Kamaji (zap): debug, info, error, panic, or a verbosity > 0. Here: overrides --log-level.
    #[arg(long, value_name = "LEVEL", value_parser = zap_level, help_heading = "Logging")]
    pub zap_log_level: Option<String>,
    /// Kamaji (zap): level from which stack traces are logged (info, error, panic). Unused.
    #[arg(long, value_name = "LEVEL", value_parser = ["info", "error", "panic"], help_heading = "Logging")]
    pub zap_stacktrace_level: Option<String>,
    /// Kamaji (zap): time encoding (epoch, millis, nano, iso8601, rfc3339, rfc3339nano). Unused: RFC 3339.
    #[arg(
        long,
        value_name = "ENCODING",
        value_parser = ["epoch", "millis", "nano", "iso8601", "rfc3339", "rfc3339nano"],
        help_heading = "Logging"
    )]
    pub zap_time_encoding: Option<String>,
}

impl KamajiFlags {
    /// Every flag of this struct: Kamaji's names, for a Kamaji Deployment; kamaji-rs'
    /// own chart has no reason to pass them.
    pub const FLAGS: [&'static str; 15] = [
        "--pprof-bind-address",
        "--tmp-directory",
        "--kine-image",
        "--migrate-image",
        "--webhook-service-name",
        "--webhook-ca-path",
        "--serviceaccount-name",
        "--controller-reconcile-timeout",
        "--cache-resync-period",
        "--disable-telemetry",
        "--zap-devel",
        "--zap-encoder",
        "--zap-log-level",
        "--zap-stacktrace-level",
        "--zap-time-encoding",
    ];

    /// The Kamaji flags given that kamaji-rs does not act on, as `--name`, in
    /// flag order: the one startup line that names them.
    pub fn unused(&self) -> Vec<&'static str> {
        let given = [
            ("--pprof-bind-address", self.pprof_bind_address.is_some()),
            ("--tmp-directory", self.tmp_directory.is_some()),
            ("--kine-image", self.kine_image.is_some()),
            ("--migrate-image", self.migrate_image.is_some()),
            ("--webhook-service-name", self.webhook_service_name.is_some()),
            ("--webhook-ca-path", self.webhook_ca_path.is_some()),
            ("--serviceaccount-name", self.serviceaccount_name.is_some()),
            (
                "--controller-reconcile-timeout",
                self.controller_reconcile_timeout.is_some(),
            ),
            ("--cache-resync-period", self.cache_resync_period.is_some()),
            ("--disable-telemetry", self.disable_telemetry.is_some()),
            ("--zap-stacktrace-level", self.zap_stacktrace_level.is_some()),
            ("--zap-time-encoding", self.zap_time_encoding.is_some()),
        ];
        given
            .into_iter()
            .filter_map(|(flag, present)| present.then_some(flag))
            .collect()
    }

    /// The log format after `--zap-encoder` (and `--zap-devel`, console as Kamaji's development mode).
    pub fn log_format(&self, kamaji_rs: LogFormat) -> LogFormat {
        match self.zap_encoder.as_deref() {
            Some("json") => LogFormat::Json,
            Some(_) => LogFormat::Text,
            None => kamaji_rs,
        }
    }

    /// The log filter after `--zap-log-level` and `--zap-devel`.
    pub fn log_level(&self, kamaji_rs: &str) -> String {
        match self.zap_log_level.as_deref() {
            Some("debug") => "debug".into(),
            Some("info") => "info".into(),
            // tracing has no panic level; error is the closest that still logs something.
            Some("error" | "panic") => "error".into(),
            // zap's numeric levels are logr verbosities: 1 is debug, more is trace.
            Some("1") => "debug".into(),
            Some(_) => "trace".into(),
            None if self.zap_devel == Some(true) => "debug".into(),
            None => kamaji_rs.into(),
        }
    }
}

fn non_empty(value: &str) -> Result<String, String> {
    // Kamaji's PreRunE refuses these flags empty ("expecting a value for --<flag> arg").
    if value.is_empty() {
        return Err("expecting a value".into());
    }
    Ok(value.to_string())
}

fn zap_level(value: &str) -> Result<String, String> {
    match value {
        "debug" | "info" | "error" | "panic" => Ok(value.to_string()),
        _ => match value.parse::<u8>() {
            Ok(n) if n > 0 => Ok(value.to_string()),
            _ => Err(format!(
                "{value:?}: one of debug, info, error, panic, or an integer greater than 0"
            )),
        },
    }
}

/// A boolean as Go's `strconv.ParseBool` reads it.
pub fn go_bool(value: &str) -> Result<bool, String> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!("{value:?} is not a boolean (true, false, 1, 0, t, f)")),
    }
}

/// A duration in Go's `time.ParseDuration` syntax (`300ms`, `1h30m`, `1.5h`,
/// `0`) or humantime's (`7d`, `36h`, `1w`). Negative values are refused: none
/// of the flags means anything with them.
pub fn go_duration(value: &str) -> Result<Duration, String> {
    if let Ok(duration) = super::durations::parse(value) {
        return Ok(duration);
    }
    parse_go_duration(value).ok_or_else(|| format!("{value:?} is not a duration such as 30s, 1h30m or 7d"))
}

fn positive_duration(value: &str) -> Result<Duration, String> {
    let duration = go_duration(value)?;
    if duration.is_zero() {
        // Kamaji: "the controller reconcile timeout must be greater than zero".
        return Err(format!("{value:?} must be greater than zero"));
    }
    Ok(duration)
}

/// Go's `time.ParseDuration` for non-negative values.
fn parse_go_duration(value: &str) -> Option<Duration> {
    let rest = value.strip_prefix('+').unwrap_or(value);
    if rest == "0" {
        return Some(Duration::ZERO);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    let mut rest = rest;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, tail) = rest.split_at(number_end);
        if number.is_empty() || number == "." {
            return None;
        }
        let number: f64 = number.parse().ok()?;
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_end);
        let nanos_per_unit = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += number * nanos_per_unit;
        rest = tail;
    }
    // Go's durations are int64 nanoseconds: anything longer overflows there too.
    (total.is_finite() && total <= i64::MAX as f64).then(|| Duration::from_nanos(total as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse_as_go_does() {
        assert_eq!(go_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(go_duration("10h"), Ok(Duration::from_secs(36_000)));
        assert_eq!(go_duration("1h30m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(go_duration("1.5h"), Ok(Duration::from_secs(5_400)));
        assert_eq!(go_duration("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(go_duration("0"), Ok(Duration::ZERO));
        assert_eq!(go_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        for bad in ["", "10", "h", "-1h", "1x", "1.2.3s"] {
            assert!(go_duration(bad).is_err(), "{bad:?} accepted");
        }
        assert!(positive_duration("0s").is_err());
    }

    #[test]
    fn go_booleans_parse_as_strconv_does() {
        for t in ["1", "t", "T", "true", "TRUE", "True"] {
            assert_eq!(go_bool(t), Ok(true));
        }
        for f in ["0", "f", "F", "false", "FALSE", "False"] {
            assert_eq!(go_bool(f), Ok(false));
        }
        assert!(go_bool("yes").is_err());
    }

    #[test]
    fn zap_flags_map_onto_kamaji_rs_logging() {
        let none = KamajiFlags::default();
        assert_eq!(none.log_level("info"), "info");
        assert_eq!(none.log_format(LogFormat::Text), LogFormat::Text);
        let devel = KamajiFlags {
            zap_devel: Some(true),
            ..KamajiFlags::default()
        };
        assert_eq!(devel.log_level("info"), "debug");
        let explicit = KamajiFlags {
            zap_devel: Some(true),
            zap_log_level: Some("error".into()),
            zap_encoder: Some("json".into()),
            ..KamajiFlags::default()
        };
        assert_eq!(explicit.log_level("info"), "error");
        assert_eq!(explicit.log_format(LogFormat::Text), LogFormat::Json);
        assert!(zap_level("0").is_err() && zap_level("3").is_ok() && zap_level("warn").is_err());
    }

    #[test]
    fn the_flag_list_names_every_field() {
        let all = KamajiFlags {
            pprof_bind_address: Some(String::new()),
            tmp_directory: Some(String::new()),
            kine_image: Some(String::new()),
            migrate_image: Some(String::new()),
            webhook_service_name: Some(String::new()),
            webhook_ca_path: Some(String::new()),
            serviceaccount_name: Some(String::new()),
            controller_reconcile_timeout: Some(Duration::ZERO),
            cache_resync_period: Some(Duration::ZERO),
            disable_telemetry: Some(true),
            zap_devel: Some(true),
            zap_encoder: Some(String::new()),
            zap_log_level: Some(String::new()),
            zap_stacktrace_level: Some(String::new()),
            zap_time_encoding: Some(String::new()),
        };
        for unused in all.unused() {
            assert!(KamajiFlags::FLAGS.contains(&unused), "{unused}");
        }
        assert_eq!(
            all.unused().len() + 3,
            KamajiFlags::FLAGS.len(),
            "three zap flags are used"
        );
    }

    #[test]
    fn only_given_flags_are_named_unused() {
        let flags = KamajiFlags {
            tmp_directory: Some("/tmp/kamaji".into()),
            disable_telemetry: Some(false),
            zap_devel: Some(true),
            ..KamajiFlags::default()
        };
        assert_eq!(flags.unused(), ["--tmp-directory", "--disable-telemetry"]);
    }
}
