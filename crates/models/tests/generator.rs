//! Loading or copying a model draws nothing from libtorch's global generator, so a seeded stream
//! (an evaluation's PGD starts, a training's shuffles) goes on as if nothing had been loaded.
//! One test in its own binary: no other test thread draws from the generator meanwhile.
use nrf_models::*;
use tch::{Device, Kind, Tensor};

#[test]
fn loading_and_cloning_leave_a_seeded_stream_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let stem = dir.path().join("m");
    for arch in [
        Arch::FmnistCnn,
        Arch::Mlp { hidden: vec![8] },
        Arch::ResNet18 { width: 2 },
    ] {
        let spec = ModelSpec::new(arch.clone(), [1, 28, 28], 10);
        let model = Model::new(&spec, Device::Cpu, 1).unwrap();
        save_model(&model, &stem).unwrap();
        let draw = || Tensor::randn([64], (Kind::Float, Device::Cpu));

        tch::manual_seed(42);
        let _ = draw();
        let expected = draw();

        tch::manual_seed(42);
        let _ = draw();
        let back = load_model(&stem, Device::Cpu).unwrap();
        let copy = back.try_clone().unwrap();
        assert!(
            draw().equal(&expected),
            "{arch:?}: loading moved the stream"
        );

        // And what was loaded is the saved model, not the placeholder it was built as.
        let x = Tensor::rand([2, 1, 28, 28], (Kind::Float, Device::Cpu));
        let want = model.logits(&x, false);
        assert!(back.logits(&x, false).equal(&want), "{arch:?}");
        assert!(copy.logits(&x, false).equal(&want), "{arch:?}");
    }
}
