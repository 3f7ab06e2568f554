//! Error type of the crate.

/// Everything that can go wrong in `nrf-theory`.
///
/// Bad inputs (wrong shapes, NaNs, matrices that are not symmetric positive definite, out-of-range
/// parameters) are reported with the name of the offending argument instead of panicking.
#[derive(Debug, thiserror::Error)]
pub enum TheoryError {
    /// An argument has a bad value or shape.
    #[error("invalid input `{field}`: {reason}")]
    InvalidInput {
        /// Name of the argument or field.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A matrix that must be symmetric positive definite is not.
    #[error("matrix `{field}` is not symmetric positive definite: {reason}")]
    NotSpd {
        /// Name of the matrix.
        field: String,
        /// Details (e.g. the failing pivot).
        reason: String,
    },
    /// A numerical routine did not converge.
    #[error("{routine} did not converge: {reason}")]
    NoConvergence {
        /// Routine name.
        routine: String,
        /// Details.
        reason: String,
    },
}

/// Result alias of the crate.
pub type Result<T> = std::result::Result<T, TheoryError>;

pub(crate) fn invalid(field: &str, reason: impl Into<String>) -> TheoryError {
    TheoryError::InvalidInput {
        field: field.to_string(),
        reason: reason.into(),
    }
}

/// Checks that a scalar is finite and strictly positive.
pub(crate) fn check_positive(field: &str, x: f64) -> Result<()> {
    if x.is_finite() && x > 0.0 {
        Ok(())
    } else {
        Err(invalid(field, format!("must be finite and > 0, got {x}")))
    }
}

/// Checks that a scalar is finite and non-negative.
pub(crate) fn check_nonneg(field: &str, x: f64) -> Result<()> {
    if x.is_finite() && x >= 0.0 {
        Ok(())
    } else {
        Err(invalid(field, format!("must be finite and >= 0, got {x}")))
    }
}
