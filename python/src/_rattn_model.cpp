// python/src/_rattn_model.cpp: a trained model (a train_tiny checkpoint) in Python, for rattn.load.
//
// The checkpoint is read by model::load_checkpoint (model/checkpoint.cpp: every check of bin/infer, the
// checksum included), the model is model::Model on the CPU backend, the one bin/infer --logits runs, so the
// logits are the ones `bin/infer --logits` writes. Nothing of the model is computed here.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "model/backend_cpu.h"
#include "model/checkpoint.h"
#include "model/config.h"
#include "model/model.h"
#include "model/params.h"

namespace py = pybind11;

namespace {

// A float32 checkpoint with its model (the precision bin/infer runs, float32).
class LoadedModel {
 public:
  explicit LoadedModel(const std::string& path)
      : st_(model::load_checkpoint<float>(path)), net_(st_.config.model, backend_) {}

  // tokens (T) in [0, vocab) -> logits (T, V) of the full-sequence forward (model/model.h Model::forward).
  py::array_t<float> forward(const std::vector<int>& tokens) const {
    check(tokens);
    ref::Mat<float> logits;
    {
      py::gil_scoped_release nogil;
      logits = net_.forward(st_.params, tokens);
    }
    return to_array(logits);
  }

  // The same logits by constant-memory decode, one token at a time (Model::decode_step, ref/decode.h).
  py::array_t<float> decode(const std::vector<int>& tokens) const {
    check(tokens);
    ref::Mat<float> logits(long(tokens.size()), st_.config.model.vocab);
    {
      py::gil_scoped_release nogil;
      model::DecodeState<float> ds = net_.decode_init();
      for (size_t i = 0; i < tokens.size(); ++i) logits.row(long(i)) = net_.decode_step(st_.params, ds, tokens[i]);
    }
    return to_array(logits);
  }

  // The checkpoint's config block: name -> value, as bin/train_tiny --help names the flags.
  std::map<std::string, std::string> config() const {
    std::map<std::string, std::string> out;
    const std::string text = model::config_to_text(st_.config);
    size_t a = 0;
    while (a < text.size()) {
      size_t b = text.find('\n', a);
      if (b == std::string::npos) b = text.size();
      const std::string line = text.substr(a, b - a);
      if (const size_t eq = line.find('='); eq != std::string::npos) out[line.substr(0, eq)] = line.substr(eq + 1);
      a = b + 1;
    }
    return out;
  }

  // Every parameter by its checkpoint name (model/params.h named_tensors), (rows, cols) float32 copies.
  std::map<std::string, py::array_t<float>> params() {
    std::map<std::string, py::array_t<float>> out;
    for (const model::NamedTensor<float>& nt : model::named_tensors(st_.config.model, st_.params))
      out[nt.name] = to_array(*nt.t);
    return out;
  }

  long step() const { return st_.step; }
  std::string layers() const { return st_.config.model.layer_string(); }

 private:
  void check(const std::vector<int>& tokens) const {
    if (tokens.empty()) throw std::invalid_argument("tokens: need at least one token");
    for (size_t i = 0; i < tokens.size(); ++i)
      if (tokens[i] < 0 || tokens[i] >= st_.config.model.vocab)
        throw std::invalid_argument("tokens[" + std::to_string(i) + "] = " + std::to_string(tokens[i]) +
                                    " is outside [0, " + std::to_string(st_.config.model.vocab) + ")");
  }
  static py::array_t<float> to_array(const ref::Mat<float>& m) {
    py::array_t<float> a({py::ssize_t(m.rows()), py::ssize_t(m.cols())});
    std::memcpy(a.mutable_data(), m.data(), sizeof(float) * size_t(m.size()));
    return a;
  }

  model::TrainState<float> st_;
  model::CpuBackend<float> backend_;
  model::Model<float> net_;
};

}  // namespace

void bind_model(py::module_& m) {
  // A bad or missing checkpoint: model::CheckpointError (a runtime_error) -> ValueError naming the file.
  py::register_exception<model::CheckpointError>(m, "CheckpointError", PyExc_ValueError);
  py::class_<LoadedModel>(m, "LoadedModel")
      .def(py::init<const std::string&>())
      .def("forward", &LoadedModel::forward)
      .def("decode", &LoadedModel::decode)
      .def("config", &LoadedModel::config)
      .def("params", &LoadedModel::params)
      .def_property_readonly("step", &LoadedModel::step)
      .def_property_readonly("layers", &LoadedModel::layers);
}
