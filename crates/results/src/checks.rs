//! Gradient-masking checks of a robustness evaluation ([`EvalChecks`]), recorded with a model.
use crate::uncertainty::{Accuracy, Margin};
use crate::Verdict;
use serde::{Deserialize, Serialize};

/// Checks of a robustness evaluation in the spirit of AutoAttack's (Croce & Hein 2020): numbers
/// that should come out a certain way when the gradients the attacks follow are informative.
/// All on the same `n` evaluation images at (`norm`, `eps`), except the unbounded attack.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EvalChecks {
    /// Norm of the checked threat model, e.g. "L2".
    pub norm: String,
    /// Its radius (the headline ε).
    pub eps: f64,
    /// Evaluation images.
    pub n: usize,
    /// PGD steps of the evaluation and its robust accuracy (the ensemble's first attack).
    pub pgd_steps: usize,
    /// See `pgd_steps`.
    pub pgd_acc: f64,
    /// The same PGD with more steps (step size scaled down alike) and its robust accuracy:
    /// more steps must not raise it.
    pub more_steps: usize,
    /// See `more_steps`.
    pub more_steps_acc: f64,
    /// Robust accuracy under the ensemble (worst case per example).
    pub ensemble_acc: f64,
    /// Steps and accuracy of an unbounded attack (only the [0, 1] box): should be near 0.
    pub unbounded_steps: usize,
    /// See `unbounded_steps`.
    pub unbounded_acc: f64,
    /// Largest absolute difference between the logits of two forward passes on the same
    /// images: 0 for a deterministic model.
    pub output_spread: f64,
    /// Queries and robust accuracy of the black-box Square attack alone (None: not run): it
    /// must not beat the white-box attacks.
    #[serde(default)]
    pub square_queries: usize,
    /// See `square_queries`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub square_acc: Option<f64>,
}

impl EvalChecks {
    /// The flags raised, one sentence each (empty when every check passes). A difference counts
    /// only beyond two standard errors (the one margin rule of [`crate::uncertainty`], which
    /// treats the two accuracies as independent, so it is conservative for these paired ones).
    pub fn flags(&self) -> Vec<String> {
        let a = |v: f64| Accuracy::single(v, self.n);
        let mut out = Vec::new();
        let rise = Margin::between(&a(self.more_steps_acc), &a(self.pgd_acc));
        if rise.verdict() == Verdict::Holds {
            out.push(format!(
                "robust accuracy rises with more steps ({:.1}% with {} steps, {:.1}% with {}; m = \
                 {}): the attack gets stuck, a sign of gradient masking",
                100.0 * self.pgd_acc,
                self.pgd_steps,
                100.0 * self.more_steps_acc,
                self.more_steps,
                rise.text()
            ));
        }
        if self.unbounded_acc > (2.0 / self.n.max(1) as f64).max(0.01) {
            out.push(format!(
                "an unbounded attack ({} steps) leaves {:.1}% accuracy: the gradients do not lead \
                 to the decision boundary, a sign of gradient masking",
                self.unbounded_steps,
                100.0 * self.unbounded_acc
            ));
        }
        if self.output_spread > 1e-5 {
            out.push(format!(
                "the model's output is random (logits of two passes differ by up to {:.2e}): \
                 attacks need an expectation over the randomness",
                self.output_spread
            ));
        }
        if let Some(sq) = self.square_acc {
            let m = Margin::between(&a(self.ensemble_acc), &a(sq));
            if m.verdict() == Verdict::Holds {
                out.push(format!(
                    "the black-box Square attack ({} queries) beats the white-box attacks ({:.1}% \
                     vs {:.1}%; m = {}): the gradients mislead the attacks, a sign of gradient \
                     masking",
                    self.square_queries,
                    100.0 * sq,
                    100.0 * self.ensemble_acc,
                    m.text()
                ));
            }
        }
        let gap = Margin::between(&a(self.pgd_acc), &a(self.ensemble_acc));
        if gap.verdict() == Verdict::Holds {
            out.push(format!(
                "PGD overestimates the robust accuracy: the ensemble lowers it from {:.1}% to \
                 {:.1}% (m = {})",
                100.0 * self.pgd_acc,
                100.0 * self.ensemble_acc,
                gap.text()
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eval_checks_flag_what_they_should_and_nothing_else() {
        let ok = EvalChecks {
            norm: "L2".into(),
            eps: 0.5,
            n: 1000,
            pgd_steps: 20,
            pgd_acc: 0.6,
            more_steps: 100,
            more_steps_acc: 0.59,
            ensemble_acc: 0.58,
            unbounded_steps: 100,
            unbounded_acc: 0.0,
            output_spread: 0.0,
            square_queries: 1000,
            square_acc: Some(0.6),
        };
        assert!(ok.flags().is_empty(), "{:?}", ok.flags());
        let bad = EvalChecks {
            more_steps_acc: 0.7,
            unbounded_acc: 0.2,
            output_spread: 0.1,
            ensemble_acc: 0.3,
            square_acc: Some(0.1),
            ..ok.clone()
        };
        let f = bad.flags();
        assert_eq!(f.len(), 5, "{f:?}");
        assert!(f[0].contains("rises with more steps"), "{f:?}");
        assert!(
            f[1].contains("unbounded") && f[2].contains("random"),
            "{f:?}"
        );
        assert!(
            f[3].contains("Square") && f[4].contains("overestimates"),
            "{f:?}"
        );
        // Within noise: a 1-point rise on 1000 images is not flagged.
        let noise = EvalChecks {
            more_steps_acc: 0.61,
            ..ok
        };
        assert!(noise.flags().is_empty(), "{:?}", noise.flags());
    }
}
