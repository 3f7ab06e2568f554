//! A short summary of a dataset (what `nrf data-info` prints).

use std::fmt;

use serde::Serialize;

use crate::Dataset;

/// Summary statistics of a [`Dataset`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DataInfo {
    /// The dataset's name.
    pub name: String,
    /// Number of examples.
    pub len: usize,
    /// (channels, height, width).
    pub shape: [usize; 3],
    /// Number of classes.
    pub num_classes: usize,
    /// Smallest finite pixel (`NaN` if there is none).
    pub min: f32,
    /// Largest finite pixel (`NaN` if there is none).
    pub max: f32,
    /// Mean of the finite pixels (`NaN` if there is none).
    pub mean: f64,
    /// Standard deviation of the finite pixels (`NaN` if there is none).
    pub std: f64,
    /// Number of NaN or infinite pixels.
    pub non_finite: usize,
    /// Examples per class (`num_classes` entries).
    pub class_counts: Vec<usize>,
    /// Labels outside `0..num_classes`.
    pub out_of_range_labels: usize,
    /// Class names (may be empty).
    pub class_names: Vec<String>,
}

/// Computes the [`DataInfo`] of a dataset. Never fails: NaNs and bad labels are counted.
pub fn data_info(ds: &Dataset) -> DataInfo {
    let mut min = f32::INFINITY;
    let mut max = f32::NEG_INFINITY;
    let (mut sum, mut sum_sq, mut count, mut non_finite) = (0f64, 0f64, 0usize, 0usize);
    for &v in &ds.images {
        if v.is_finite() {
            min = min.min(v);
            max = max.max(v);
            sum += v as f64;
            sum_sq += (v as f64) * (v as f64);
            count += 1;
        } else {
            non_finite += 1;
        }
    }
    let (mean, std) = if count == 0 {
        (f64::NAN, f64::NAN)
    } else {
        let m = sum / count as f64;
        (m, (sum_sq / count as f64 - m * m).max(0.0).sqrt())
    };
    if count == 0 {
        min = f32::NAN;
        max = f32::NAN;
    }
    let class_counts = ds.class_counts();
    let out_of_range_labels = ds.len() - class_counts.iter().sum::<usize>();
    DataInfo {
        name: ds.name.clone(),
        len: ds.len(),
        shape: ds.shape,
        num_classes: ds.num_classes,
        min,
        max,
        mean,
        std,
        non_finite,
        class_counts,
        out_of_range_labels,
        class_names: ds.class_names.clone(),
    }
}

impl fmt::Display for DataInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [c, h, w] = self.shape;
        writeln!(f, "dataset:  {}", self.name)?;
        writeln!(f, "examples: {}", self.len)?;
        writeln!(f, "shape:    {c} x {h} x {w} (C x H x W)")?;
        writeln!(
            f,
            "pixels:   min {:.4}  max {:.4}  mean {:.4}  std {:.4}",
            self.min, self.max, self.mean, self.std
        )?;
        if self.non_finite > 0 {
            writeln!(
                f,
                "          {} non-finite (NaN/inf) pixels",
                self.non_finite
            )?;
        }
        writeln!(f, "classes:  {}", self.num_classes)?;
        for (i, n) in self.class_counts.iter().enumerate() {
            let name = self.class_names.get(i).map_or("", String::as_str);
            writeln!(f, "  {i:>3}  {name:<14} {n:>8}")?;
        }
        if self.out_of_range_labels > 0 {
            writeln!(f, "  {} labels out of range", self.out_of_range_labels)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_counts_and_stats() {
        let ds = Dataset {
            name: "toy".into(),
            images: vec![0.0, 1.0, 0.5, 0.5, 0.25, 0.75],
            labels: vec![0, 2, 2],
            shape: [1, 1, 2],
            num_classes: 3,
            class_names: vec!["a".into(), "b".into(), "c".into()],
        };
        let i = data_info(&ds);
        assert_eq!(i.len, 3);
        assert_eq!(i.class_counts, vec![1, 0, 2]);
        assert_eq!((i.min, i.max), (0.0, 1.0));
        assert!((i.mean - 0.5).abs() < 1e-12);
        let var = (0.25 + 0.25 + 0.0 + 0.0 + 0.0625 + 0.0625) / 6.0;
        assert!((i.std - f64::sqrt(var)).abs() < 1e-9);
        let text = i.to_string();
        assert!(
            text.contains("toy") && text.contains("1 x 1 x 2") && text.contains("c "),
            "{text}"
        );
        assert!(!text.contains("non-finite"));

        let mut bad = ds.clone();
        bad.images[1] = f32::NAN;
        bad.labels[0] = 7;
        let i = data_info(&bad);
        assert_eq!((i.non_finite, i.out_of_range_labels, i.max), (1, 1, 0.75));
        assert!(i.to_string().contains("non-finite"));
    }
}
