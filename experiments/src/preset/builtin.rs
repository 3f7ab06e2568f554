//! The presets shipped with nrf.

/// The presets shipped with nrf (embedded in the binary).
pub const BUILTIN: [(&str, &str); 5] = [
    ("smoke", include_str!("../../presets/smoke.toml")),
    (
        "fashion-mnist",
        include_str!("../../presets/fashion-mnist.toml"),
    ),
    (
        "fashion-mnist-full",
        include_str!("../../presets/fashion-mnist-full.toml"),
    ),
    ("cifar10", include_str!("../../presets/cifar10.toml")),
    (
        "restricted-imagenet",
        include_str!("../../presets/restricted-imagenet.toml"),
    ),
];
