//! How well risk scores separate an agent's anomalies from its normal behaviour (issue 17,
//! section 4; the numbers this prints are in docs/detection.md, "Risk scores").
//!
//! A synthetic agent works on weekdays from 08:00 to 18:00 UTC for two weeks: an action
//! every 90 seconds on average with short bursts now and then, four tools, five hosts with
//! uneven shares, parameters of a few hundred bytes, 3% denied, 4% carrying personal data.
//! Its profile learns from those two weeks. Then, over the next two weekdays, the same agent
//! keeps working (the normal actions, scored and learned one by one) while anomalies are
//! injected and scored (but not learned): bursts of 60 actions in a minute, data (with
//! personal data found in it) sent to hosts it never used, activity between 01:00 and 05:00
//! and at weekends, and a tool it never called. The test prints the ROC AUC of the scores
//! (anomalies against normal actions) overall and per anomaly, and fails under the floors.

use aaf_core::detect::Kind;
use aaf_core::risk::{Hit, Learning, Observation, Profile, Recent};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Monday 2026-11-02 00:00 UTC.
const START: i64 = 1_793_577_600;
const DAY: i64 = 86_400;
const LEARNING: Learning = Learning {
    actions: 100,
    seconds: 86_400,
};

#[derive(Clone)]
struct Action {
    tool: &'static str,
    operation: &'static str,
    host: Option<String>,
    at: i64,
    bytes: u64,
    denied: bool,
    hits: Vec<Hit>,
}

impl Action {
    fn observation(&self) -> Observation<'_> {
        Observation {
            tool: self.tool,
            operation: self.operation,
            host: self.host.as_deref(),
            at: self.at,
            params_bytes: self.bytes,
            denied: self.denied,
        }
    }
}

fn pick<'a, T>(rng: &mut StdRng, weighted: &'a [(T, f64)]) -> &'a T {
    let total: f64 = weighted.iter().map(|(_, w)| w).sum();
    let mut x = rng.random::<f64>() * total;
    for (item, w) in weighted {
        if x < *w {
            return item;
        }
        x -= w;
    }
    &weighted[weighted.len() - 1].0
}

/// One normal action at `at`.
fn normal_action(rng: &mut StdRng, at: i64) -> Action {
    let (tool, operation) = *pick(
        rng,
        &[
            (("http_proxy", "GET"), 0.6),
            (("http_proxy", "POST"), 0.15),
            (("search", "query"), 0.15),
            (("files", "read"), 0.1),
        ],
    );
    let host = (tool == "http_proxy").then(|| {
        pick(
            rng,
            &[
                ("crm.example.com", 0.4),
                ("api.example.com", 0.3),
                ("docs.example.com", 0.2),
                ("billing.example.com", 0.08),
                ("status.example.com", 0.02),
            ],
        )
        .to_string()
    });
    // Log-normal sizes around 400 bytes (Box-Muller for the normal deviate).
    let (u1, u2): (f64, f64) = (rng.random::<f64>().max(1e-12), rng.random());
    let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
    let bytes = (400f64.ln() + 0.6 * z).exp() as u64;
    let hits = if rng.random::<f64>() < 0.04 {
        vec![Hit {
            kind: Kind::Pii,
            confidence: 0.9,
        }]
    } else {
        Vec::new()
    };
    Action {
        tool,
        operation,
        host,
        at,
        bytes,
        denied: rng.random::<f64>() < 0.03,
        hits,
    }
}

/// The normal actions of weekdays `days` (08:00 to 18:00 UTC), in order.
fn normal_days(rng: &mut StdRng, days: std::ops::Range<i64>) -> Vec<Action> {
    let mut out = Vec::new();
    for day in days {
        if day.rem_euclid(7) >= 5 {
            continue;
        }
        let mut t = START + day * DAY + 8 * 3600;
        let end = START + day * DAY + 18 * 3600;
        while t < end {
            out.push(normal_action(rng, t));
            if rng.random::<f64>() < 0.05 {
                for _ in 0..rng.random_range(1..5) {
                    t += rng.random_range(1..10);
                    out.push(normal_action(rng, t));
                }
            }
            // Exponential gaps, 90 s on average.
            t += (-90.0 * rng.random::<f64>().max(1e-12).ln()).ceil() as i64;
        }
    }
    out
}

/// What came just before `at` among `history` and then `extra` (each sorted by time).
fn recent(history: &[Action], extra: &[Action], at: i64) -> Recent {
    let before: Vec<&Action> = history.iter().chain(extra).filter(|a| a.at <= at).collect();
    let last_minute = before.iter().filter(|a| a.at > at - 60).count() as u64;
    let latest: Vec<&&Action> = before.iter().rev().take(20).collect();
    Recent {
        last_minute,
        decided: latest.len() as u64,
        denied: latest.iter().filter(|a| a.denied).count() as u64,
    }
}

/// ROC AUC: the probability that an anomaly scores above a normal action (ties count half).
fn auc(anomalies: &[f64], normal: &[f64]) -> f64 {
    let mut wins = 0.0;
    for a in anomalies {
        for n in normal {
            wins += if a > n {
                1.0
            } else if a == n {
                0.5
            } else {
                0.0
            };
        }
    }
    wins / (anomalies.len() * normal.len()) as f64
}

#[test]
fn anomalies_score_clearly_above_normal_behaviour() {
    let mut rng = StdRng::seed_from_u64(17);
    let mut profile = Profile::default();
    let training = normal_days(&mut rng, 0..14);
    for a in &training {
        profile.observe(&a.observation());
    }
    let evaluation = normal_days(&mut rng, 14..16);
    assert!(profile.learned(LEARNING));

    // The anomalies, each scored against the profile as it stands at its time.
    let mut anomalies: Vec<(&str, Action, Vec<Action>)> = Vec::new();
    let active = |rng: &mut StdRng| {
        START + rng.random_range(14..16) * DAY + rng.random_range(9 * 3600..17 * 3600)
    };
    for _ in 0..3 {
        let t0 = active(&mut rng);
        let burst: Vec<Action> = (0..60).map(|i| normal_action(&mut rng, t0 + i)).collect();
        // The first ten of a burst look like a busy minute; the rest are the anomaly.
        for i in 10..burst.len() {
            anomalies.push(("burst", burst[i].clone(), burst[..i].to_vec()));
        }
    }
    for i in 0..30 {
        let at = active(&mut rng);
        let mut a = normal_action(&mut rng, at);
        a.tool = "http_proxy";
        a.operation = "POST";
        a.host = Some(format!("upload{i}.exfil.example.net"));
        a.hits = vec![Hit {
            kind: Kind::Pii,
            confidence: 0.9,
        }];
        anomalies.push(("new host receiving data", a, Vec::new()));
    }
    for _ in 0..30 {
        let day: i64 = 14 + rng.random_range(0..7);
        let hour = if day.rem_euclid(7) >= 5 {
            rng.random_range(9..17)
        } else {
            rng.random_range(1..5)
        };
        let at = START + day * DAY + hour * 3600 + rng.random_range(0..3600);
        anomalies.push(("off-hours", normal_action(&mut rng, at), Vec::new()));
    }
    for _ in 0..20 {
        let at = active(&mut rng);
        let mut a = normal_action(&mut rng, at);
        a.tool = "payments";
        a.operation = "transfer";
        a.host = None;
        anomalies.push(("new tool", a, Vec::new()));
    }
    anomalies.sort_by_key(|(_, a, _)| a.at);

    let mut normal_scores = Vec::new();
    // Which factors raised normal actions to 0.3 or more (the false alarms).
    let mut false_alarms: std::collections::BTreeMap<String, usize> = Default::default();
    let mut anomaly_scores: Vec<(&str, f64)> = Vec::new();
    let mut history: Vec<Action> = training.clone();
    let mut next_anomaly = 0;
    for a in &evaluation {
        while next_anomaly < anomalies.len() && anomalies[next_anomaly].1.at <= a.at {
            let (label, anomaly, before) = &anomalies[next_anomaly];
            let r = profile.score(
                &anomaly.observation(),
                recent(&history, before, anomaly.at - 1),
                &anomaly.hits,
                LEARNING,
            );
            anomaly_scores.push((label, r.score));
            next_anomaly += 1;
        }
        let r = profile.score(
            &a.observation(),
            recent(&history, &[], a.at - 1),
            &a.hits,
            LEARNING,
        );
        normal_scores.push(r.score);
        if r.score >= 0.3 {
            for f in &r.factors {
                *false_alarms.entry(f.name.clone()).or_default() += 1;
            }
        }
        profile.observe(&a.observation());
        history.push(a.clone());
    }
    for (label, anomaly, before) in &anomalies[next_anomaly..] {
        let r = profile.score(
            &anomaly.observation(),
            recent(&history, before, anomaly.at - 1),
            &anomaly.hits,
            LEARNING,
        );
        anomaly_scores.push((label, r.score));
    }

    let all: Vec<f64> = anomaly_scores.iter().map(|(_, s)| *s).collect();
    let overall = auc(&all, &normal_scores);
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let mut sorted = normal_scores.clone();
    sorted.sort_by(f64::total_cmp);
    let p99 = sorted[(sorted.len() * 99 / 100).min(sorted.len() - 1)];
    let above_half = sorted.iter().filter(|s| **s >= 0.5).count();
    println!(
        "training actions: {}, normal actions scored: {}, anomalies scored: {}",
        training.len(),
        normal_scores.len(),
        all.len()
    );
    println!(
        "normal: mean score {:.3}, p99 {:.3}, at or above 0.5: {above_half}",
        mean(&normal_scores),
        p99
    );
    println!("factors of normal actions scoring 0.3 or more: {false_alarms:?}");
    println!("| anomaly | scored | mean score | min score | ROC AUC vs normal |");
    println!("|---|---|---|---|---|");
    for label in ["burst", "new host receiving data", "off-hours", "new tool"] {
        let scores: Vec<f64> = anomaly_scores
            .iter()
            .filter(|(l, _)| *l == label)
            .map(|(_, s)| *s)
            .collect();
        let a = auc(&scores, &normal_scores);
        let min = scores.iter().copied().fold(1.0, f64::min);
        println!(
            "| {label} | {} | {:.3} | {min:.3} | {a:.3} |",
            scores.len(),
            mean(&scores)
        );
        assert!(a >= 0.9, "{label}: ROC AUC {a:.3} under 0.9");
    }
    println!(
        "| all | {} | {:.3} | | {overall:.3} |",
        all.len(),
        mean(&all)
    );
    assert!(overall >= 0.95, "ROC AUC {overall:.3} under 0.95");
    assert!(
        (above_half as f64) / (normal_scores.len() as f64) <= 0.01,
        "{above_half} of {} normal actions scored 0.5 or more",
        normal_scores.len()
    );
}
