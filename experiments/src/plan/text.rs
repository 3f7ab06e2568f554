//! The plan as a readable table, and the units it is written in.
use super::Plan;

/// FLOPs with a unit: "3.2 TFLOP".
pub fn flops_text(f: f64) -> String {
    let units = [
        (1e18, "EFLOP"),
        (1e15, "PFLOP"),
        (1e12, "TFLOP"),
        (1e9, "GFLOP"),
        (1e6, "MFLOP"),
    ];
    for (scale, unit) in units {
        if f >= scale {
            return format!("{:.1} {unit}", f / scale);
        }
    }
    format!("{f:.0} FLOP")
}

/// A duration: "42 s", "3.5 min", "2.1 h", "4.0 d".
pub fn time_text(s: f64) -> String {
    if s < 90.0 {
        format!("{s:.0} s")
    } else if s < 90.0 * 60.0 {
        format!("{:.1} min", s / 60.0)
    } else if s < 48.0 * 3600.0 {
        format!("{:.1} h", s / 3600.0)
    } else {
        format!("{:.1} d", s / 86400.0)
    }
}

/// Image-passes: "1.2M".
fn count_text(n: f64) -> String {
    if n >= 1e9 {
        format!("{:.2}G", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.2}M", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.1}k", n / 1e3)
    } else {
        format!("{n:.0}")
    }
}

impl Plan {
    /// The source models' lines (`[sources]`): how each is priced.
    fn sources_text(&self) -> String {
        let mut s = String::new();
        for x in &self.sources {
            s += &format!(
                "  {} = {} ({}): {}; its stages are counted at {:.2}x the preset architecture's FLOPs (FLOP-equivalents)\n",
                x.model,
                x.file,
                crate::construct_cmd::ModelFormat::of(std::path::Path::new(&x.file)).label(),
                x.detail,
                x.relative_cost
            );
        }
        s
    }

    /// The plan as a readable table.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "nrf plan: preset {}{} — {} ({} train / {} test images of {}x{}x{}, {} classes; sizes: {})\n",
            self.preset,
            if self.overrides.is_empty() {
                String::new()
            } else {
                format!(" with --set {}", self.overrides.join(" --set "))
            },
            self.dataset,
            self.train_images,
            self.test_images,
            self.image_shape[0],
            self.image_shape[1],
            self.image_shape[2],
            self.classes,
            self.sizes_from
        );
        let t = &self.throughput;
        s += &format!(
            "throughput: {:.1} GFLOP/s ({}{}{})\n\n",
            t.gflops,
            if t.source == "measured" {
                format!("measured on {}: ", t.device)
            } else {
                String::new()
            },
            t.detail,
            t.matmul_gflops
                .map(|m| format!("; f32 matmul {m:.1} GFLOP/s"))
                .unwrap_or_default()
        );
        s += "per image (convolutions and linear layers; a multiply-add = 2 FLOP):\n";
        for m in &self.models {
            s += &format!(
                "  {:<26} {:>7.2} M params   forward {:>10.1} MFLOP   training backward {:>10.1} MFLOP   input-gradient backward {:>10.1} MFLOP\n",
                m.arch,
                m.params as f64 / 1e6,
                m.forward_mflop,
                m.train_backward_mflop,
                m.input_backward_mflop
            );
        }
        s += &self.sources_text();
        s += "\npasses: fwd = forward, bwd = training backward (weights + input), bwd_x = input-gradient backward (attack step)\n";
        let w_name = self
            .stages
            .iter()
            .map(|x| x.name.len())
            .max()
            .unwrap_or(5)
            .max(5);
        let w_arch = self
            .stages
            .iter()
            .map(|x| x.arch.len())
            .max()
            .unwrap_or(5)
            .max(5);
        s += &format!(
            "{:<w_name$}  {:<w_arch$}  {:>7}  {:>5}  {:>8}  {:>8}  {:>8}  {:>12}  {:>9}  work per image\n",
            "stage", "model", "images", "seeds", "fwd", "bwd", "bwd_x", "FLOPs", "time"
        );
        for x in &self.stages {
            s += &format!(
                "{:<w_name$}  {:<w_arch$}  {:>7}  {:>5}  {:>8}  {:>8}  {:>8}  {:>12}  {:>9}  {}\n",
                x.name,
                x.arch,
                x.images,
                x.seeds,
                count_text(x.forward),
                count_text(x.train_backward),
                count_text(x.input_backward),
                flops_text(x.flops),
                time_text(x.seconds),
                x.work
            );
        }
        s += "\nby kind:\n";
        for k in &self.by_kind {
            s += &format!(
                "  {:<10} {:>3} stages  {:>12}  {:>9}  ({:.0}%)\n",
                k.kind,
                k.sums.stages,
                flops_text(k.sums.flops),
                time_text(k.sums.seconds),
                100.0 * k.sums.flops / self.total_flops.max(f64::MIN_POSITIVE)
            );
        }
        s += "\nby part (robust evaluation's share of each: an upper bound):\n";
        for t in &self.by_part {
            let label = if t.part == super::CORE_PART {
                "core: Figure 2 + Table 1".to_string()
            } else {
                format!("extra {}", t.part)
            };
            s += &format!(
                "  {:<28} {:>3} stages  {:>12}  {:>9}  ({:.0}%; {} of it robust evaluation)\n",
                label,
                t.sums.stages,
                flops_text(t.sums.flops),
                time_text(t.sums.seconds),
                100.0 * t.sums.flops / self.total_flops.max(f64::MIN_POSITIVE),
                flops_text(t.bounded_flops)
            );
        }
        s += &format!(
            "\ntotal: {} stages, {}, {:.2} hours at {:.1} GFLOP/s ({})\n",
            self.stages.len(),
            flops_text(self.total_flops),
            self.total_hours,
            self.throughput.gflops,
            if self.throughput.source == "measured" {
                format!("measured on {}", self.throughput.device)
            } else {
                "--gflops".into()
            }
        );
        s += "not counted: theory (section 4, ndarray), the report, data loading; robust evaluation counted as if no example were ever fooled (an upper bound).\n";
        s
    }
}
