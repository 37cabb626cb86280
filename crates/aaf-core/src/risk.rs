//! Behavioural baselines and risk scores (issue 17, section 4; docs/detection.md, "Risk
//! scores").
//!
//! A [`Profile`] is what an agent usually does, learned from its own actions one at a time
//! ([`Profile::observe`]): the tools and operations it calls, the hosts it reaches, the hours
//! of the week it works in, how many actions it submits in a busy minute, how often it is
//! denied and how large its parameters are. It is plain data (serde), so the server stores it
//! and every node reads the same profile.
//!
//! [`Profile::score`] gives an action a risk score in `[0, 1]` with the named
//! [`Factor`]s that raised it. Each factor contributes at most its weight; the score is
//! their noisy-OR, `1 - Π(1 - contribution)`: one strong factor gives a high score, several
//! weak ones add up, and the score never leaves `[0, 1]`. Until the profile has seen
//! [`Learning::actions`] actions over [`Learning::seconds`], only the factors that need no
//! baseline (the detectors' findings) count, and the result says `learning: true`. After it,
//! a factor still waits for its own data: `rate_above_usual` for five busy minutes that
//! ended, `large_params` for 20 actions.
//!
//! | factor | contribution | when |
//! |---|---|---|
//! | `new_tool` | 0.5 | the agent never called this tool |
//! | `new_operation` | 0.3 | it called the tool, never with this operation |
//! | `new_host` | 0.6 | it never reached this destination host |
//! | `rate_above_usual` | 0.35 to 0.7 | its actions in the last minute, this one included, exceed `max(mean + 4 sd, 3 × mean, busiest, 5)` of its busy minutes |
//! | `unusual_hour` | up to 0.4 | under a quarter of a uniform share of its actions fall within an hour of this one (hour of the week once the profile spans a week, else hour of the day; UTC) |
//! | `large_params` | 0.15 to 0.3 | the parameters' size is more than 3 standard deviations above usual (log scale) |
//! | `denials_above_usual` | up to 0.4 | of its last actions (at least 5, 3 denied) the share denied exceeds its usual share by 0.3 |
//! | `detected_secret` | 0.6 × confidence | a detector found a secret in the params or context |
//! | `detected_prompt_injection` | 0.6 × confidence | … prompt injection |
//! | `detected_tool_argument` | 0.5 × confidence | … a tool-argument attack (path traversal, shell, SQL) |
//! | `detected_pii` | 0.25 × confidence | … personal data |
//!
//! The tools, operations and hosts a profile keeps are bounded ([`MAX_KEYS`],
//! [`MAX_OPERATIONS`]): when full, the least used is replaced by the newcomer, which inherits
//! its count plus one (the space-saving algorithm of Metwally, Agrawal and El Abbadi,
//! "Efficient computation of frequent and top-k elements in data streams", ICDT 2005), so the
//! frequent ones are never lost.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::detect::Kind;

/// Hours in a week: the size of [`Profile::hours`].
pub const HOURS_PER_WEEK: usize = 168;
/// The most tools, and hosts, a profile keeps.
pub const MAX_KEYS: usize = 256;
/// The most operations a profile keeps per tool.
pub const MAX_OPERATIONS: usize = 64;
/// The longest tool, operation or host name a profile keeps (longer ones are cut, in
/// characters).
pub const MAX_KEY_CHARS: usize = 256;
/// The version of the profile's shape; [`Profile::default`] has it.
pub const PROFILE_VERSION: u32 = 1;

/// Running mean and variance (Welford, "Note on a method for calculating corrected sums of
/// squares and products", Technometrics 4(3), 1962).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Welford {
    /// Values seen.
    pub n: u64,
    /// Their mean.
    pub mean: f64,
    /// The sum of squared differences from the mean.
    pub m2: f64,
}

impl Welford {
    /// Adds a value (non-finite values are ignored).
    pub fn push(&mut self, x: f64) {
        if !x.is_finite() {
            return;
        }
        self.n += 1;
        let delta = x - self.mean;
        self.mean += delta / self.n as f64;
        self.m2 += delta * (x - self.mean);
    }

    /// The sample standard deviation (0 for fewer than two values).
    pub fn sd(&self) -> f64 {
        if self.n < 2 {
            return 0.0;
        }
        (self.m2 / (self.n - 1) as f64).max(0.0).sqrt()
    }
}

/// What an agent usually does (see the module's documentation). All times are Unix seconds,
/// UTC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Profile {
    /// The shape's version ([`PROFILE_VERSION`]).
    pub version: u32,
    /// Actions observed.
    pub actions: u64,
    /// When the first observed action was submitted.
    pub first_at: Option<i64>,
    /// When the latest observed action was submitted.
    pub last_at: Option<i64>,
    /// Tool → operation → actions.
    pub tools: BTreeMap<String, BTreeMap<String, u64>>,
    /// Destination host (lower case) → actions.
    pub hosts: BTreeMap<String, u64>,
    /// Actions per hour of the week, from Monday 00:00 UTC ([`HOURS_PER_WEEK`] entries).
    pub hours: Vec<u64>,
    /// Actions denied.
    pub denied: u64,
    /// Actions per active minute, over the minutes that ended.
    pub minutes: Welford,
    /// The minute being counted: `(Unix minute, actions in it)`.
    pub minute: Option<(i64, u64)>,
    /// The most actions in one minute that ended.
    pub busiest_minute: u64,
    /// `ln(1 + bytes)` of the parameters' canonical JSON.
    pub sizes: Welford,
}

impl Default for Profile {
    fn default() -> Self {
        Profile {
            version: PROFILE_VERSION,
            actions: 0,
            first_at: None,
            last_at: None,
            tools: BTreeMap::new(),
            hosts: BTreeMap::new(),
            hours: vec![0; HOURS_PER_WEEK],
            denied: 0,
            minutes: Welford::default(),
            minute: None,
            busiest_minute: 0,
            sizes: Welford::default(),
        }
    }
}

/// One action, as a profile learns from it and scores it.
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    /// The tool.
    pub tool: &'a str,
    /// The operation.
    pub operation: &'a str,
    /// The destination host (of `params.url`), if any.
    pub host: Option<&'a str>,
    /// When it was submitted (Unix seconds).
    pub at: i64,
    /// The size of its parameters (bytes of their JSON).
    pub params_bytes: u64,
    /// Whether it was denied (learning only: an action is scored before it is decided).
    pub denied: bool,
}

/// What the agent did just before the action being scored, which its profile may not hold
/// yet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recent {
    /// The agent's actions in the 60 seconds before this one.
    pub last_minute: u64,
    /// Its latest actions considered for `denials_above_usual` (at most 20).
    pub decided: u64,
    /// How many of those were denied.
    pub denied: u64,
}

/// A detector's finding, as the score uses it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    /// What it found.
    pub kind: Kind,
    /// Its confidence in `[0, 1]`.
    pub confidence: f64,
}

/// How much a profile must have seen before its baseline factors count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Learning {
    /// Actions observed, at least.
    pub actions: u64,
    /// Seconds between the first and the latest observed action, at least.
    pub seconds: u64,
}

/// One reason an action's risk score is what it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Factor {
    /// Its name, e.g. `new_host` (module documentation).
    pub name: String,
    /// What it adds, in `(0, 1]`, before the noisy-OR.
    pub contribution: f64,
    /// What was seen, e.g. `"exfil.example.net: not among the 3 hosts of 1200 actions"`.
    pub detail: String,
}

/// An action's risk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Risk {
    /// The score in `[0, 1]`, rounded to 3 decimals.
    pub score: f64,
    /// The factors, largest contribution first.
    pub factors: Vec<Factor>,
    /// Whether the profile is still learning (only detector factors counted).
    pub learning: bool,
    /// The actions the profile had observed.
    pub baseline_actions: u64,
}

/// Adds one to `key`'s count in `map`, replacing the least used key when `map` holds `max`
/// (space-saving; the module's documentation).
fn bump(map: &mut BTreeMap<String, u64>, key: &str, max: usize) {
    let key: String = key.chars().take(MAX_KEY_CHARS).collect();
    if let Some(n) = map.get_mut(&key) {
        *n += 1;
        return;
    }
    let mut count = 1;
    if map.len() >= max {
        if let Some((least, n)) = map
            .iter()
            .min_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)))
            .map(|(k, n)| (k.clone(), *n))
        {
            map.remove(&least);
            count = n + 1;
        }
    }
    map.insert(key, count);
}

/// The hour of the week of `at` (Unix seconds), from Monday 00:00 UTC.
pub fn hour_of_week(at: i64) -> usize {
    // 1970-01-01 was a Thursday: shift by three days so that Monday starts the week.
    let hours = (at.div_euclid(3600) + 72).rem_euclid(HOURS_PER_WEEK as i64);
    usize::try_from(hours).unwrap_or(0)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

impl Profile {
    /// Learns from one action. Actions should come in the order they were submitted; a
    /// slightly late one counts in the current minute.
    pub fn observe(&mut self, obs: &Observation<'_>) {
        if self.hours.len() != HOURS_PER_WEEK {
            self.hours = vec![0; HOURS_PER_WEEK];
        }
        self.actions += 1;
        self.first_at = Some(self.first_at.map_or(obs.at, |f| f.min(obs.at)));
        self.last_at = Some(self.last_at.map_or(obs.at, |l| l.max(obs.at)));
        let tool: String = obs.tool.chars().take(MAX_KEY_CHARS).collect();
        if !self.tools.contains_key(&tool) && self.tools.len() >= MAX_KEYS {
            // Space-saving over tools, by their total count.
            if let Some(least) = self
                .tools
                .iter()
                .min_by_key(|(_, ops)| ops.values().sum::<u64>())
                .map(|(k, _)| k.clone())
            {
                self.tools.remove(&least);
            }
        }
        bump(
            self.tools.entry(tool).or_default(),
            obs.operation,
            MAX_OPERATIONS,
        );
        if let Some(host) = obs.host {
            bump(&mut self.hosts, &host.to_ascii_lowercase(), MAX_KEYS);
        }
        if let Some(h) = self.hours.get_mut(hour_of_week(obs.at)) {
            *h += 1;
        }
        if obs.denied {
            self.denied += 1;
        }
        let minute = obs.at.div_euclid(60);
        self.minute = Some(match self.minute {
            Some((current, n)) if minute > current => {
                self.minutes.push(n as f64);
                self.busiest_minute = self.busiest_minute.max(n);
                (minute, 1)
            }
            Some((current, n)) => (current, n + 1),
            None => (minute, 1),
        });
        self.sizes.push((1.0 + obs.params_bytes as f64).ln());
    }

    /// Whether the profile has seen enough to score on its baseline.
    pub fn learned(&self, learning: Learning) -> bool {
        let span = match (self.first_at, self.last_at) {
            (Some(f), Some(l)) => u64::try_from(l - f).unwrap_or(0),
            _ => 0,
        };
        self.actions >= learning.actions && span >= learning.seconds
    }

    /// The risk of an action (see the module's documentation for the factors).
    pub fn score(
        &self,
        obs: &Observation<'_>,
        recent: Recent,
        hits: &[Hit],
        learning: Learning,
    ) -> Risk {
        let mut factors = Vec::new();
        let learned = self.learned(learning);
        if learned {
            self.baseline_factors(obs, recent, &mut factors);
        }
        detection_factors(hits, &mut factors);
        factors.retain(|f| f.contribution > 0.0);
        factors.sort_by(|a, b| {
            b.contribution
                .total_cmp(&a.contribution)
                .then_with(|| a.name.cmp(&b.name))
        });
        let keep: f64 = factors
            .iter()
            .map(|f| 1.0 - f.contribution.clamp(0.0, 1.0))
            .product();
        for f in &mut factors {
            f.contribution = round3(f.contribution);
        }
        Risk {
            score: round3((1.0 - keep).clamp(0.0, 1.0)),
            factors,
            learning: !learned,
            baseline_actions: self.actions,
        }
    }

    fn baseline_factors(&self, obs: &Observation<'_>, recent: Recent, out: &mut Vec<Factor>) {
        let n = self.actions;
        match self.tools.get(obs.tool) {
            None => out.push(Factor {
                name: "new_tool".into(),
                contribution: 0.5,
                detail: format!(
                    "{:?}: not among the {} tools of {n} actions",
                    obs.tool,
                    self.tools.len()
                ),
            }),
            Some(ops) if !ops.contains_key(obs.operation) => out.push(Factor {
                name: "new_operation".into(),
                contribution: 0.3,
                detail: format!(
                    "{:?} {:?}: the tool was used with {} other operations",
                    obs.tool,
                    obs.operation,
                    ops.len()
                ),
            }),
            Some(_) => {}
        }
        if let Some(host) = obs.host {
            let host = host.to_ascii_lowercase();
            if !self.hosts.contains_key(&host) {
                out.push(Factor {
                    name: "new_host".into(),
                    contribution: 0.6,
                    detail: format!(
                        "{host}: not among the {} hosts of {n} actions",
                        self.hosts.len()
                    ),
                });
            }
        }
        self.rate_factor(recent, out);
        self.hour_factor(obs.at, out);
        self.size_factor(obs.params_bytes, out);
        self.denial_factor(recent, out);
    }

    fn rate_factor(&self, recent: Recent, out: &mut Vec<Factor>) {
        // The usual rate is known once five busy minutes have ended.
        if self.minutes.n < 5 {
            return;
        }
        let count = recent.last_minute.saturating_add(1) as f64;
        let (mean, sd) = (self.minutes.mean, self.minutes.sd());
        let busiest = self.busiest_minute as f64;
        let threshold = (mean + 4.0 * sd).max(3.0 * mean).max(busiest).max(5.0);
        if count > threshold {
            let v = (0.5 + (count - threshold) / (2.0 * threshold)).min(1.0);
            out.push(Factor {
                name: "rate_above_usual".into(),
                contribution: 0.7 * v,
                detail: format!(
                    "{count} actions in the last minute; usually {mean:.1} (sd {sd:.1}) in a busy minute, at most {busiest}"
                ),
            });
        }
    }

    fn hour_factor(&self, at: i64, out: &mut Vec<Factor>) {
        if self.actions == 0 || self.hours.len() != HOURS_PER_WEEK {
            return;
        }
        let week = HOURS_PER_WEEK as i64;
        let h = hour_of_week(at) as i64;
        let spans_week = match (self.first_at, self.last_at) {
            (Some(f), Some(l)) => l - f >= 7 * 86_400,
            _ => false,
        };
        let count_at = |hour: i64| -> u64 {
            if spans_week {
                self.hours[usize::try_from(hour.rem_euclid(week)).unwrap_or(0)]
            } else {
                // Hour of the day: the same hour on every day of the week.
                (0..7)
                    .map(|d| {
                        let i = (hour.rem_euclid(24) + 24 * d).rem_euclid(week);
                        self.hours[usize::try_from(i).unwrap_or(0)]
                    })
                    .sum()
            }
        };
        let window: u64 = (h - 1..=h + 1).map(count_at).sum();
        let share = window as f64 / self.actions as f64;
        let uniform = if spans_week { 3.0 / 168.0 } else { 3.0 / 24.0 };
        let floor = uniform / 4.0;
        if share < floor {
            let v = 1.0 - share / floor;
            out.push(Factor {
                name: "unusual_hour".into(),
                contribution: 0.4 * v,
                detail: format!(
                    "{:.1}% of its actions fall within an hour of {} (UTC, hour of the {})",
                    share * 100.0,
                    describe_hour(h, spans_week),
                    if spans_week { "week" } else { "day" }
                ),
            });
        }
    }

    fn size_factor(&self, bytes: u64, out: &mut Vec<Factor>) {
        if self.sizes.n < 20 {
            return;
        }
        let x = (1.0 + bytes as f64).ln();
        let sd = self.sizes.sd().max(0.25);
        let z = (x - self.sizes.mean) / sd;
        if z > 3.0 {
            let v = (0.5 + (z - 3.0) / 6.0).min(1.0);
            out.push(Factor {
                name: "large_params".into(),
                contribution: 0.3 * v,
                detail: format!(
                    "{bytes} bytes of parameters, {z:.1} standard deviations above its usual {:.0}",
                    self.sizes.mean.exp() - 1.0
                ),
            });
        }
    }

    fn denial_factor(&self, recent: Recent, out: &mut Vec<Factor>) {
        if recent.decided < 5 || recent.denied < 3 || self.actions == 0 {
            return;
        }
        let usual = self.denied as f64 / self.actions as f64;
        let now = recent.denied as f64 / recent.decided as f64;
        if now > usual + 0.3 {
            let v = ((now - usual) / (1.0 - usual).max(0.01)).min(1.0);
            out.push(Factor {
                name: "denials_above_usual".into(),
                contribution: 0.4 * v,
                detail: format!(
                    "{} of its last {} actions denied; usually {:.1}%",
                    recent.denied,
                    recent.decided,
                    usual * 100.0
                ),
            });
        }
    }
}

fn describe_hour(hour_of_week: i64, week: bool) -> String {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    let hour = hour_of_week.rem_euclid(24);
    if week {
        let day = usize::try_from(hour_of_week.div_euclid(24).rem_euclid(7)).unwrap_or(0);
        format!("{} {hour:02}:00", DAYS[day])
    } else {
        format!("{hour:02}:00")
    }
}

/// The detector factors: per kind, its weight times the highest confidence found.
fn detection_factors(hits: &[Hit], out: &mut Vec<Factor>) {
    for (kind, name, weight) in [
        (Kind::Secret, "detected_secret", 0.6),
        (Kind::PromptInjection, "detected_prompt_injection", 0.6),
        (Kind::ToolArgument, "detected_tool_argument", 0.5),
        (Kind::Pii, "detected_pii", 0.25),
    ] {
        let of_kind: Vec<f64> = hits
            .iter()
            .filter(|h| h.kind == kind)
            .map(|h| h.confidence.clamp(0.0, 1.0))
            .collect();
        if let Some(max) = of_kind.iter().copied().reduce(f64::max) {
            out.push(Factor {
                name: name.into(),
                contribution: weight * max,
                detail: format!(
                    "{} finding(s) of kind {}, highest confidence {max:.2}",
                    of_kind.len(),
                    kind.name()
                ),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEARNED: Learning = Learning {
        actions: 10,
        seconds: 0,
    };

    fn obs(tool: &str, host: Option<&'static str>, at: i64) -> Observation<'static> {
        let tool: &'static str = Box::leak(tool.to_string().into_boxed_str());
        Observation {
            tool,
            operation: "GET",
            host,
            at,
            params_bytes: 100,
            denied: false,
        }
    }

    /// Monday 2026-11-30 10:00 UTC.
    const MONDAY_10: i64 = 1_796_032_800;

    fn trained() -> Profile {
        let mut p = Profile::default();
        for i in 0..200 {
            p.observe(&obs(
                "http_proxy",
                Some("api.example.com"),
                MONDAY_10 + i * 120,
            ));
        }
        p
    }

    #[test]
    fn hour_of_week_starts_on_monday() {
        assert_eq!(hour_of_week(MONDAY_10), 10);
        assert_eq!(hour_of_week(MONDAY_10 + 6 * 86_400), 6 * 24 + 10);
        assert_eq!(hour_of_week(0), 3 * 24);
    }

    #[test]
    fn a_usual_action_scores_zero_and_a_new_host_scores_high() {
        let p = trained();
        let usual = p.score(
            &obs("http_proxy", Some("API.example.com"), MONDAY_10 + 3_000),
            Recent::default(),
            &[],
            LEARNED,
        );
        assert_eq!(usual.score, 0.0, "{usual:?}");
        assert!(!usual.learning);
        let new = p.score(
            &obs("http_proxy", Some("exfil.example.net"), MONDAY_10 + 3_000),
            Recent::default(),
            &[],
            LEARNED,
        );
        assert_eq!(new.score, 0.6);
        assert_eq!(new.factors[0].name, "new_host");
    }

    #[test]
    fn factors_combine_by_noisy_or_and_stay_in_range() {
        let p = trained();
        let hits = [
            Hit {
                kind: Kind::Secret,
                confidence: 1.0,
            },
            Hit {
                kind: Kind::Pii,
                confidence: 0.9,
            },
        ];
        let r = p.score(
            &obs("payments", Some("exfil.example.net"), MONDAY_10 + 3_000),
            Recent {
                last_minute: 200,
                decided: 20,
                denied: 15,
            },
            &hits,
            LEARNED,
        );
        assert!(r.score > 0.95 && r.score <= 1.0, "{r:?}");
        let names: Vec<&str> = r.factors.iter().map(|f| f.name.as_str()).collect();
        for n in [
            "new_tool",
            "new_host",
            "rate_above_usual",
            "detected_secret",
            "detected_pii",
            "denials_above_usual",
        ] {
            assert!(names.contains(&n), "{n} missing from {names:?}");
        }
        assert!(r
            .factors
            .windows(2)
            .all(|w| w[0].contribution >= w[1].contribution));
    }

    #[test]
    fn while_learning_only_detections_count() {
        let mut p = Profile::default();
        p.observe(&obs("http_proxy", Some("a.example"), MONDAY_10));
        let r = p.score(
            &obs("other", Some("b.example"), MONDAY_10 + 60),
            Recent::default(),
            &[Hit {
                kind: Kind::PromptInjection,
                confidence: 0.5,
            }],
            Learning {
                actions: 100,
                seconds: 86_400,
            },
        );
        assert!(r.learning);
        assert_eq!(r.score, 0.3);
        assert_eq!(r.factors.len(), 1);
        assert_eq!(r.factors[0].name, "detected_prompt_injection");
    }

    #[test]
    fn off_hours_and_large_params_are_noticed() {
        let p = trained();
        // Monday 03:00: never active within an hour of it.
        let r = p.score(
            &obs("http_proxy", Some("api.example.com"), MONDAY_10 - 7 * 3600),
            Recent::default(),
            &[],
            LEARNED,
        );
        assert_eq!(r.factors[0].name, "unusual_hour", "{r:?}");
        let mut big = obs("http_proxy", Some("api.example.com"), MONDAY_10 + 3_000);
        big.params_bytes = 100_000;
        let r = p.score(&big, Recent::default(), &[], LEARNED);
        assert_eq!(r.factors[0].name, "large_params", "{r:?}");
    }

    #[test]
    fn the_kept_keys_are_bounded_and_keep_the_frequent_ones() {
        let mut p = Profile::default();
        for _ in 0..10 {
            p.observe(&obs("http_proxy", Some("frequent.example"), MONDAY_10));
        }
        for i in 0..1000 {
            let host: &'static str = Box::leak(format!("h{i}.example").into_boxed_str());
            p.observe(&obs(&format!("tool{i}"), Some(host), MONDAY_10 + i));
        }
        assert_eq!(p.hosts.len(), MAX_KEYS);
        assert!(p.tools.len() <= MAX_KEYS);
        assert!(p.hosts.contains_key("frequent.example"));
        assert!(p.tools.contains_key("http_proxy"));
        let long = "x".repeat(10_000);
        p.observe(&obs(&long, None, MONDAY_10));
        assert!(p.tools.keys().all(|k| k.chars().count() <= MAX_KEY_CHARS));
    }

    #[test]
    fn minutes_are_counted_when_they_end() {
        let mut p = Profile::default();
        for i in 0..3 {
            p.observe(&obs("t", None, MONDAY_10 + i));
        }
        p.observe(&obs("t", None, MONDAY_10 + 61));
        assert_eq!(p.minutes.n, 1);
        assert_eq!(p.minutes.mean, 3.0);
        assert_eq!(p.minute, Some((MONDAY_10.div_euclid(60) + 1, 1)));
        // A profile survives serialization unchanged.
        let json = serde_json::to_value(&p).unwrap_or_default();
        let back: Profile = serde_json::from_value(json).unwrap_or_default();
        assert_eq!(back, p);
    }
}
