"""What a model's config says: width, class names, positions, whether it is a language model."""

from conftest import hf_bert, tiny_llama

from pela.arch.properties import class_names, hidden_size, is_causal_lm, max_positions


def test_an_encoder_and_a_language_model_read_from_their_configs():
    bert, llama = hf_bert(), tiny_llama()
    assert hidden_size(bert) == bert.config.hidden_size
    assert max_positions(bert) == bert.config.max_position_embeddings
    assert not is_causal_lm(bert) and is_causal_lm(llama)
    assert class_names(bert) is None  # no head, no names


def test_class_names_come_from_id2label_unless_placeholders():
    bert = hf_bert()
    bert.config.id2label = {0: "LABEL_0", 1: "LABEL_1"}
    assert class_names(bert) is None
    bert.config.id2label = {1: "positive", 0: "negative"}
    assert class_names(bert) == ["negative", "positive"]


def test_a_timm_model_has_its_features_width():
    import timm

    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, num_classes=3)
    assert hidden_size(vit) == vit.num_features and max_positions(vit) is None
