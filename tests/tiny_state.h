// tests/tiny_state.h: the smallest valid training state, for tests and fuzz seeds that need a real
// checkpoint file without training one (tests/test_cli.cpp, fuzz/make_seeds.cpp).
//
//   model::save_checkpoint(path, rattn_test::tiny_train_state());
//
// d_model 8, one local layer "L" with one head of dimension 2, window 2, ffn 8; seq_len 8, 2 pairs,
// one step without warmup; weights from init_params(seed 1), Adam moments zero, step 1.
#pragma once
#include "model/checkpoint.h"

namespace rattn_test {

inline model::TrainState<float> tiny_train_state() {
  model::TrainState<float> st;
  st.config.model.d_model = 8;
  st.config.model.n_heads = 1;
  st.config.model.n_kv_heads = 1;
  st.config.model.head_dim = 2;
  st.config.model.ffn_dim = 8;
  st.config.model.n_layers = 1;
  st.config.model.pattern = "L";
  st.config.model.window = 2;
  st.config.train.seq_len = 8;
  st.config.train.pairs = 2;
  st.config.train.warmup = 0;
  st.config.train.steps = 1;
  st.params = model::init_params<float>(st.config.model, 1);
  st.m = model::params_filled<float>(st.config.model, 0.0f);
  st.v = model::params_filled<float>(st.config.model, 0.0f);
  st.step = 1;
  st.data_rng = "1";
  return st;
}

}  // namespace rattn_test
