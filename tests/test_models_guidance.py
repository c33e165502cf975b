"""Click-guidance inputs on the segmentation model: config fields, the input layer taking PET, CT then the click maps,
and a model without guidance loading into one with zero guidance weights (equal outputs at zero clicks)."""

from __future__ import annotations

import pytest
import torch

from modeling_petct import PetCtConfig, PetCtForMaskedImageModeling, PetCtForSegmentation


def _input_weights(model) -> dict[str, torch.Tensor]:
    """The weights that read the network input (the only tensors whose size follows config.in_channels)."""
    n = model.config.in_channels
    return {k: v for k, v in model.state_dict().items() if v.ndim == 5 and v.shape[1] == n}


@pytest.mark.parametrize("preset, shape", [("tiny-unet", (32, 32, 32)), ("tiny-swin", (32, 64, 64))])
def test_a_segmenter_without_guidance_loads_with_zero_guidance_weights_and_equal_outputs(preset, shape, tmp_path):
    torch.manual_seed(0)
    plain = PetCtForSegmentation(PetCtConfig.from_preset(preset, num_labels=2)).eval()
    plain.save_pretrained(tmp_path)
    guided = PetCtForSegmentation.from_pretrained(tmp_path, guidance_channels=2, guidance_encoding="ball",
                                                  guidance_size=4).eval()
    assert (guided.config.in_channels, guided.config.guidance_encoding, guided.config.guidance_size) == (4, "ball", 4)
    widened = _input_weights(guided)
    assert widened and all(w.shape[1] == 4 for w in widened.values())
    before = plain.state_dict()
    for key, tensor in guided.state_dict().items():
        if key in widened:
            assert torch.equal(tensor[:, :2], before[key]) and not tensor[:, 2:].any()
        else:
            assert torch.equal(tensor, before[key]), key

    image = torch.randn(1, 2, *shape)
    with torch.no_grad():
        expected = plain(image).logits
        at_zero_clicks = guided(torch.cat([image, torch.zeros(1, 2, *shape)], 1)).logits
    torch.testing.assert_close(at_zero_clicks, expected, rtol=1e-4, atol=1e-5)


def test_click_maps_reach_the_guidance_weights_in_training(tmp_path):
    """Zero-initialised guidance weights still learn: a click gives them a gradient."""
    torch.manual_seed(1)
    model = PetCtForSegmentation(PetCtConfig.from_preset("tiny-unet", num_labels=2)).with_guidance(2)
    clicks = torch.zeros(1, 2, 32, 32, 32)
    clicks[0, 0, 10:13, 10:13, 10:13] = 1.0
    labels = torch.zeros(1, 32, 32, 32, dtype=torch.long)
    labels[0, 8:15, 8:15, 8:15] = 1
    model(torch.cat([torch.randn(1, 2, 32, 32, 32), clicks], 1), labels=labels).loss.backward()
    grads = [p.grad for name, p in model.named_parameters() if p.ndim == 5 and p.shape[1] == 4]
    assert grads and all(g[:, 2].abs().sum() > 0 for g in grads)


def test_a_guidance_model_round_trips_and_refuses_inputs_without_its_click_maps(tmp_path):
    model = PetCtForSegmentation(PetCtConfig.from_preset("tiny-unet", num_labels=2, guidance_channels=2))
    model.save_pretrained(tmp_path)
    again = PetCtForSegmentation.from_pretrained(tmp_path)
    assert again.config.guidance_channels == 2
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    with pytest.raises(ValueError, match=r"\(B, 4, D, H, W\).*2 guidance channels"):
        again(torch.zeros(1, 2, 32, 32, 32))
    with pytest.raises(ValueError, match="already takes 2 guidance channels"):
        again.with_guidance(0)


def test_guidance_fields_are_validated_and_the_autoencoder_takes_none():
    for field, value in (("guidance_channels", 1), ("guidance_encoding", "disk"), ("guidance_size", 0)):
        with pytest.raises(ValueError, match=rf"PetCtConfig\.{field}"):
            PetCtConfig.from_preset("tiny-unet", **{field: value})
    with pytest.raises(ValueError, match="takes no click guidance"):
        PetCtForMaskedImageModeling(PetCtConfig.from_preset("tiny-unet", guidance_channels=2))


def test_the_config_repeats_the_click_encodings_of_the_data_layer():
    from modeling_petct.data import conventions
    from modeling_petct.models import configuration_petct

    assert configuration_petct.GUIDANCE_ENCODINGS == conventions.GUIDANCE_ENCODINGS


def test_sliding_window_feeds_click_maps_after_the_image_and_zero_maps_without_clicks():
    import numpy as np

    from modeling_petct.inference import InferenceSettings, predict_probabilities

    torch.manual_seed(2)
    plain = PetCtForSegmentation(PetCtConfig.from_preset("tiny-unet", num_labels=2)).eval()
    guided = plain.with_guidance(2).eval()
    image = np.random.default_rng(0).normal(size=(2, 40, 36, 44)).astype(np.float32)
    settings = InferenceSettings(precision="fp32", backend="torch")
    expected = predict_probabilities(plain, image, settings)
    np.testing.assert_allclose(predict_probabilities(guided, image, settings), expected, atol=1e-5)
    with torch.no_grad():
        for p in guided.parameters():
            if p.ndim == 5 and p.shape[1] == 4:
                p[:, 2:] = 0.5  # clicks now matter
    clicks = np.zeros((2, 40, 36, 44), np.float32)
    clicks[0, 20, 18, 22] = 1.0
    assert not np.allclose(predict_probabilities(guided, image, settings, guidance=clicks), expected, atol=1e-3)
    with pytest.raises(ValueError, match="takes no click guidance"):
        predict_probabilities(plain, image, settings, guidance=clicks)
