// Python bindings of the native runtime (module lmzip.native._native).
//
// Arrays cross as numpy buffers without copies; every long computation releases the GIL.
// Inputs are validated here (shapes, dtypes, ranges), so the kernels only ever see consistent
// sizes whatever a caller or a damaged file hands in.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <string>

#include "coder.h"
#include "model.h"
#include "predictor.h"

namespace py = pybind11;
using namespace lmz;

namespace {

template <typename T>
using carray = py::array_t<T, py::array::c_style | py::array::forcecast>;

template <typename T>
std::vector<T> to_vector(const carray<T>& a) {
  return std::vector<T>(a.data(), a.data() + a.size());
}

// A model plus the numpy arrays whose memory its weights point into (memory-mapped files).
struct PyModel {
  std::unique_ptr<Model> model;
  std::vector<py::object> keep;
};

Linear* linear_by_name(Model& m, const std::string& name) {
  if (name == "embed") return &m.embed;
  if (name == "head") return &m.head;
  if (name.rfind("layers.", 0) == 0) {
    const size_t dot = name.find('.', 7);
    if (dot == std::string::npos) throw std::invalid_argument("bad tensor name " + name);
    const int i = std::stoi(name.substr(7, dot - 7));
    const std::string w = name.substr(dot + 1);
    if (i < 0 || i >= m.cfg.layers) throw std::invalid_argument("layer index out of range in " + name);
    Model::Layer& L = m.layer[size_t(i)];
    if (w == "wqkv") return &L.wqkv;
    if (w == "wo") return &L.wo;
    if (w == "w13") return &L.w13;
    if (w == "w2") return &L.w2;
  }
  throw std::invalid_argument("unknown tensor " + name);
}

void expected_shape(const Model& m, const std::string& name, int& rows, int& cols) {
  const ModelConfig& c = m.cfg;
  const int hd = c.head_dim();
  if (name == "embed" || name == "head") { rows = c.vocab; cols = c.dim; return; }
  const std::string w = name.substr(name.find('.', 7) + 1);
  if (w == "wqkv") { rows = (c.heads + 2 * c.kv_heads) * hd; cols = c.dim; }
  else if (w == "wo") { rows = c.dim; cols = c.heads * hd; }
  else if (w == "w13") { rows = 2 * c.ffn; cols = c.dim; }
  else { rows = c.dim; cols = c.ffn; }
}

// Every entry >= 1 and every row summing to 2**total_bits (what the coder requires).
template <typename T>
void check_rows(const T* rows, int64_t n, int V, int total_bits) {
  for (int64_t r = 0; r < n; ++r) {
    const T* row = rows + r * V;
    int64_t sum = 0;
    T low = row[0];
    for (int i = 0; i < V; ++i) {
      sum += row[i];
      low = row[i] < low ? row[i] : low;
    }
    if (low < 1) throw std::invalid_argument("frequency rows must have every entry >= 1");
    if (sum != (int64_t(1) << total_bits))
      throw std::invalid_argument("frequency rows must sum to 2**" + std::to_string(total_bits) + " = " +
                                  std::to_string(int64_t(1) << total_bits) + ", got " + std::to_string(sum));
  }
}

// Frequency rows as int32 (values are <= 2**24 once checked).
carray<int32_t> rows_int32(py::array rows, int total_bits, int ndim) {
  if (rows.ndim() != ndim || rows.shape(ndim - 1) < 1) throw std::invalid_argument("bad frequency array shape");
  const int V = int(rows.shape(ndim - 1));
  const int64_t n = ndim == 1 ? 1 : rows.shape(0);
  if (py::isinstance<py::array_t<int32_t>>(rows)) {
    auto a = carray<int32_t>::ensure(rows);
    check_rows(a.data(), n, V, total_bits);
    return a;
  }
  auto a = carray<int64_t>::ensure(rows);
  if (!a) throw std::invalid_argument("frequencies must be integers");
  check_rows(a.data(), n, V, total_bits);
  carray<int32_t> out(std::vector<py::ssize_t>(rows.shape(), rows.shape() + ndim));
  for (int64_t i = 0; i < a.size(); ++i) out.mutable_data()[i] = int32_t(a.data()[i]);
  return out;
}

struct PyEncoder {
  TokenCoder coder;
  RangeEncoder enc;
  int64_t symbols = 0;
  bool finished = false;
  PyEncoder(int tb, int k) : coder(tb, k) {}
  void code(const int32_t* row, int V, int32_t s, const int32_t* bm = nullptr) {
    uint32_t cum[2], freq[2];
    const int n = coder.steps(row, V, s, cum, freq, bm);
    for (int i = 0; i < n; ++i) enc.encode(cum[i], freq[i]);
    ++symbols;
  }
};

struct PyDecoder {
  TokenCoder coder;
  RangeDecoder dec;
  RangeEncoder shadow;
  int64_t symbols = 0;
  PyDecoder(std::vector<uint32_t> words, int tb, int k) : coder(tb, k), dec(std::move(words)) {}
  int32_t code(const int32_t* row, int V, const int32_t* bm = nullptr) {
    ++symbols;
    const int32_t s = coder.decode(row, V, dec, shadow, bm);
    // More words read past the end than any valid stream needs: the stream claims more than its
    // payload holds (FORMAT.md 7.3), so decoding stops after work proportional to the payload.
    if (s >= 0 && dec.overread() > MAX_OVERREAD) return -2;
    return s;
  }
};

Predictor* new_predictor(py::tuple params, carray<int64_t> exp_table, int vocab, py::object classes) {
  PredictorParams p;
  p.bias_lr = params[0].cast<int>();
  p.bigram_lr = params[1].cast<int>();
  p.temp_lr = params[2].cast<int>();
  p.ngram_order = params[3].cast<int>();
  p.match = params[4].cast<bool>();
  p.mix_lr = params[5].cast<int>();
  p.mixer2 = params[6].cast<bool>();
  p.v3 = params.size() > 7 && params[7].cast<bool>();
  std::vector<int64_t> cls;
  if (!classes.is_none()) cls = to_vector(classes.cast<carray<int64_t>>());
  return new Predictor(p, to_vector(exp_table), vocab, std::move(cls));
}

template <class T>
void check_logits(const carray<T>& z, int V, int ndim) {
  if (z.ndim() != ndim || z.shape(ndim - 1) != V) throw std::invalid_argument("logits have the wrong shape");
}

// Predictor.predict of one logits row.
template <class T>
py::array_t<int32_t> predict_row(Predictor& p, carray<T> z) {
  check_logits(z, p.vocab(), 1);
  py::array_t<int32_t> out(p.vocab());
  {
    py::gil_scoped_release nogil;
    p.predict(z.data(), out.mutable_data());
  }
  return out;
}

template <class T>
void def_logit_loops(py::module_& m) {
  m.def("encode_logits", [](Predictor& p, PyEncoder& e, carray<T> z, carray<int64_t> targets) {
    const int V = p.vocab();
    check_logits(z, V, 2);
    const int64_t n = z.shape(0);
    if (targets.size() != n) throw std::invalid_argument("one target per logits row");
    for (int64_t i = 0; i < n; ++i)
      if (targets.data()[i] < 0 || targets.data()[i] >= V) throw std::invalid_argument("target out of range");
    if (e.finished) throw std::invalid_argument("encoder already finished");
    py::gil_scoped_release nogil;
    std::vector<int32_t> f(static_cast<size_t>(V));
    for (int64_t i = 0; i < n; ++i) {
      p.predict(z.data() + i * V, f.data());
      e.code(f.data(), V, int32_t(targets.data()[i]), p.block_maxima());
      p.update(int32_t(targets.data()[i]));
    }
  });
  m.def("decode_logits", [](Predictor* p, PyDecoder& d, carray<T> rows, std::vector<int64_t> guesses) {
    // Decode from rows 0, 1, ... while the guesses hold (row k was computed with guesses[:k] as
    // input); returns the symbols decoded (the last is -1 on invalid data).
    if (rows.ndim() != 2) throw std::invalid_argument("rows must be [n, V]");
    int64_t n = rows.shape(0);
    const int V = int(rows.shape(1));
    if (rows.ndim() != 2 || (p && V != p->vocab())) throw std::invalid_argument("rows have the wrong shape");
    if (int64_t(guesses.size()) + 1 < n) n = int64_t(guesses.size()) + 1;
    std::vector<int64_t> out;
    {
      py::gil_scoped_release nogil;
      std::vector<int32_t> f(static_cast<size_t>(V));
      for (int64_t i = 0; i < n; ++i) {
        if (p) {
          p->predict(rows.data() + i * V, f.data());
        } else {
          for (int v = 0; v < V; ++v) f[size_t(v)] = int32_t(rows.data()[i * V + v]);
        }
        const int32_t s = d.code(f.data(), V, p ? p->block_maxima() : nullptr);
        out.push_back(s);
        if (s < 0) break;
        if (p) p->update(s);
        if (i + 1 >= n || s != guesses[size_t(i)]) break;
      }
    }
    return out;
  }, py::arg("predictor"), py::arg("decoder"), py::arg("rows"), py::arg("guesses"));
}

// The host's side of a device decoding step (lmzip/coding/device_decode.py): stream i decodes one
// token from rows[slots[i]] with predictors[i] (the rows are logits), or with no predictors at all
// from the row itself (the rows are frequencies), the streams spread over the pool's threads.
// Each stream's state is touched by one task only, so the symbols cannot depend on the threads.
struct HostPool {
  ThreadPool pool;
  explicit HostPool(int threads) : pool(threads) {}
};

template <class T>
void def_step_loops(py::class_<HostPool>& c) {
  c.def("decode_step", [](HostPool& hp, std::vector<Predictor*> preds, std::vector<PyDecoder*> decs,
                          carray<T> rows, std::vector<int64_t> slots) {
    if (rows.ndim() != 2) throw std::invalid_argument("rows must be [n, V]");
    const int64_t n = int64_t(decs.size()), R = rows.shape(0);
    const int V = int(rows.shape(1));
    if (int64_t(slots.size()) != n || (!preds.empty() && int64_t(preds.size()) != n))
      throw std::invalid_argument("one slot (and one predictor, if any) per decoder");
    std::vector<const void*> seen;
    for (int64_t i = 0; i < n; ++i) {
      if (!decs[size_t(i)] || slots[size_t(i)] < 0 || slots[size_t(i)] >= R) throw std::invalid_argument("bad decoder or slot");
      if (!preds.empty() && (!preds[size_t(i)] || preds[size_t(i)]->vocab() != V)) throw std::invalid_argument("bad predictor");
      seen.push_back(decs[size_t(i)]);
      if (!preds.empty()) seen.push_back(preds[size_t(i)]);
    }
    std::sort(seen.begin(), seen.end());
    if (std::adjacent_find(seen.begin(), seen.end()) != seen.end())
      throw std::invalid_argument("a decoder or predictor appears twice in one step");
    py::array_t<int64_t> out(n);
    int64_t* o = out.mutable_data();
    const T* base = rows.data();
    {
      py::gil_scoped_release nogil;
      hp.pool.run(n, [&](int64_t i) {
        thread_local std::vector<int32_t> f;
        f.resize(size_t(V));
        Predictor* p = preds.empty() ? nullptr : preds[size_t(i)];
        const T* row = base + slots[size_t(i)] * V;
        if (p) {
          p->predict(row, f.data());
        } else {
          for (int v = 0; v < V; ++v) f[size_t(v)] = int32_t(row[v]);
        }
        const int32_t s = decs[size_t(i)]->code(f.data(), V, p ? p->block_maxima() : nullptr);
        o[i] = s;
        if (s >= 0 && p) p->update(s);
      });
    }
    return out;
  }, py::arg("predictors"), py::arg("decoders"), py::arg("rows"), py::arg("slots"),
  "One token for each stream (the symbols; negative: that stream's data is invalid)");
}

}  // namespace

PYBIND11_MODULE(_native, m) {
  m.doc() = "lmzip's native exact runtime";
  m.def("best_simd", &best_simd, "Highest SIMD level this CPU can run (0 portable, 1 avx2, 2 avx512vnni)");
  m.def("simd_name", &simd_name);
  m.def("verified_simd", &verified_simd, "The highest level <= wanted whose kernels pass the known-answer checks here");
  m.def("set_dense_level", &set_dense_level, "Cap the SIMD level of the predictor's and coder's loops");
  m.def("read_bandwidth", [](int64_t megabytes, int threads, int reps) {
    // Bytes per second read by `threads` threads summing a buffer much larger than the caches:
    // the ceiling of a decoding step, which reads every weight once.
    const size_t n = size_t(megabytes) << 20;
    Bytes buf;
    buf.assign_zero(n);
    for (size_t i = 0; i < n; i += 64) buf.data()[i] = int8_t(i >> 6);
    ThreadPool pool(threads);
    std::vector<int64_t> sink(size_t(threads) * 8, 0);
    double best = 1e30;
    py::gil_scoped_release nogil;
    for (int r = 0; r < reps; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      pool.run(threads, [&](int64_t t) {
        const size_t a = n / threads * size_t(t), b = n / threads * size_t(t + 1);
        const int32_t* p = reinterpret_cast<const int32_t*>(buf.data() + a);
        int64_t s = 0;
        for (size_t i = 0; i < (b - a) / 4; i += 1 << 20) s += dense().sum32(p + i, int(std::min<size_t>(1 << 20, (b - a) / 4 - i)));
        sink[size_t(t) * 8] = s;
      });
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    return double(n) / best;
  }, py::arg("megabytes") = 512, py::arg("threads") = 2, py::arg("reps") = 5);
  m.def("dot_peak", [](int threads, int64_t iters, int level) {
    // Products per second of the int8 x int16 dot product on `threads` threads at the level (-1:
    // the best that passes its checks; 0, the portable path: none): the ceiling of a matmul.
    level = verified_simd(level < 0 ? best_simd() : level);
    int64_t (*loop)(int64_t) = nullptr;
#if defined(__x86_64__)
    if (level >= SIMD_AVX512VNNI) loop = dot_peak_avx512vnni;
    else if (level >= SIMD_AVX2) loop = dot_peak_avx2;
#endif
    if (!loop) return 0.0;
    ThreadPool pool(threads);
    std::vector<int64_t> macs(size_t(threads) * 8, 0);
    double best = 1e30;
    py::gil_scoped_release nogil;
    for (int r = 0; r < 3; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      pool.run(threads, [&](int64_t t) { macs[size_t(t) * 8] = loop(iters); });
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    return double(macs[0]) * threads / best;
  }, py::arg("threads") = 2, py::arg("iters") = 20000000, py::arg("level") = -1);
  m.def("dense_level", &dense_level);
  m.def("exp3_rel", [](carray<int32_t> q, int32_t top) {
    // The predictor's exp3 pass at the current level, for tests: (et, sum, first index of top).
    py::array_t<int32_t> et(q.size());
    std::copy(q.data(), q.data() + q.size(), et.mutable_data());
    int arg = 0;
    const int64_t s = dense().exp3_rel(et.mutable_data(), top, int(q.size()), &arg);
    return py::make_tuple(et, s, arg);
  });

  py::class_<Cache>(m, "Cache")
      .def(py::init<int, int, int, int, int>(), py::arg("batch"), py::arg("capacity"), py::arg("layers"),
           py::arg("kv_heads"), py::arg("hdp"))
      .def_readonly("batch", &Cache::batch)
      .def_readonly("capacity", &Cache::capacity)
      .def("lengths", [](py::object self) {
        Cache& c = self.cast<Cache&>();
        return py::array_t<int64_t>({py::ssize_t(c.batch)}, {py::ssize_t(sizeof(int64_t))}, c.lengths.data(), self);
      }, "The streams' lengths as a writable numpy view (valid until keep())")
      .def("copy_stream", [](Cache& c, int slot, const Cache& other, int other_slot) {
        if (slot < 0 || slot >= c.batch || other_slot < 0 || other_slot >= other.batch) throw std::out_of_range("slot");
        c.copy_stream(slot, other, other_slot);
      })
      .def("keep", [](Cache& c, const std::vector<int>& slots) {
        for (int s : slots)
          if (s < 0 || s >= c.batch) throw std::out_of_range("slot");
        c.keep(slots);
      })
      .def_property_readonly("nbytes", &Cache::nbytes)
      .def("marked", &Cache::marked, "(key vectors, value groups) marked as holding remainders beyond int16");

  py::class_<PyModel>(m, "Model")
      .def(py::init([](py::dict cfgd, py::dict tables, int simd, int threads) {
        ModelConfig c;
        c.vocab = cfgd["vocab_size"].cast<int>();
        c.dim = cfgd["dim"].cast<int>();
        c.layers = cfgd["n_layers"].cast<int>();
        c.heads = cfgd["n_heads"].cast<int>();
        c.kv_heads = cfgd["n_kv_heads"].cast<int>();
        c.ffn = cfgd["ffn_dim"].cast<int>();
        c.max_context = cfgd["max_context"].cast<int>();
        c.norm_eps = cfgd["norm_eps"].cast<double>();
        c.score_scale = cfgd["score_scale"].cast<double>();
        if (c.vocab < 1 || c.dim < 2 || c.layers < 0 || c.heads < 1 || c.kv_heads < 1 || c.ffn < 1 ||
            c.max_context < 1 || c.dim % c.heads || c.heads % c.kv_heads || c.head_dim() % 2 || c.head_dim() > 256)
          throw std::invalid_argument("inconsistent model shape");
        Tables t;
        t.rope_cos = to_vector(tables["rope_cos"].cast<carray<double>>());
        t.rope_sin = to_vector(tables["rope_sin"].cast<carray<double>>());
        t.attn_exp = to_vector(tables["attn_exp"].cast<carray<double>>());
        t.out_exp = to_vector(tables["out_exp"].cast<carray<int64_t>>());
        t.sigmoid = to_vector(tables["sigmoid"].cast<carray<double>>());
        const size_t half = size_t(c.head_dim() / 2);
        if (t.rope_cos.size() != size_t(c.max_context) * half || t.rope_sin.size() != t.rope_cos.size() ||
            t.sigmoid.size() != size_t(2 * (16 << 10) + 1) || t.attn_exp.empty() || t.out_exp.empty() ||
            t.attn_exp.back() != 0 || t.out_exp.back() != 0)
          throw std::invalid_argument("lookup tables do not fit the model");
        for (double e : t.attn_exp)  // the kernels' bound on attention weights (kernels.h)
          if (!(e >= 0 && e <= MIX_WEIGHT_MAX && e == double(int64_t(e))))
            throw std::invalid_argument("attention weights must be integers in 0..2**20");
        auto pm = new PyModel;
        pm->model.reset(new Model(c, std::move(t), simd, threads));
        return pm;
      }), py::arg("config"), py::arg("tables"), py::arg("simd"), py::arg("threads"))
      .def("set_weights", [](PyModel& pm, const std::string& name, py::array q, py::array scale) {
        Model& mdl = *pm.model;
        Linear* L = linear_by_name(mdl, name);
        int rows, cols;
        expected_shape(mdl, name, rows, cols);
        auto qa = py::array_t<int8_t, py::array::c_style>::ensure(q);
        auto sa = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(scale);
        if (!qa || !sa || qa.ndim() != 2 || qa.shape(0) != rows || qa.shape(1) != cols || sa.ndim() != 1 ||
            sa.shape(0) != rows)
          throw std::invalid_argument("tensor " + name + " has the wrong shape or type");
        if (name == "embed")
          L->set_rows(qa.data(), sa.data(), rows, cols);  // read one row per token
        else
          L->set(qa.data(), sa.data(), rows, cols);  // packed for the matmul kernels
      })
      .def_property("simd", [](const PyModel& pm) { return pm.model->simd(); },
                    [](PyModel& pm, int level) { pm.model->set_simd(level); })
      .def_property("threads", [](const PyModel& pm) { return pm.model->threads(); },
                    [](PyModel& pm, int n) { pm.model->set_threads(n); })
      .def("new_cache", [](PyModel& pm, int batch, int capacity) {
        const ModelConfig& c = pm.model->cfg;
        if (batch < 1 || capacity < 1 || capacity > c.max_context) throw std::invalid_argument("bad cache size");
        const int hdp = int((c.head_dim() + HD_ALIGN - 1) / HD_ALIGN * HD_ALIGN);
        return new Cache(batch, capacity, c.layers, c.kv_heads, hdp);
      })
      .def("hidden", [](PyModel& pm, Cache& cache, carray<int64_t> tokens) {
        Model& mdl = *pm.model;
        if (tokens.ndim() != 2) throw std::invalid_argument("tokens must be [batch, n]");
        const int B = int(tokens.shape(0)), n = int(tokens.shape(1));
        py::array_t<double> h({py::ssize_t(B), py::ssize_t(n), py::ssize_t(mdl.cfg.dim)});
        {
          py::gil_scoped_release nogil;
          mdl.hidden(cache, tokens.data(), B, n, h.mutable_data());
        }
        return h;
      })
      .def("phase_seconds", [](PyModel& pm, bool reset) {
        static const char* names[] = {"norm", "qkv", "rope", "attention", "wo", "w13", "silu", "w2", "embed"};
        py::dict out;
        for (int i = 0; i < Model::PH_COUNT; ++i) {
          out[names[i]] = pm.model->phase_seconds[i];
          if (reset) pm.model->phase_seconds[i] = 0;
        }
        return out;
      }, py::arg("reset") = false, "Seconds per phase of hidden() (profiling)")
      .def("head_logits", [](PyModel& pm, carray<double> h) {
        Model& mdl = *pm.model;
        if (h.ndim() < 1 || h.shape(h.ndim() - 1) != mdl.cfg.dim) throw std::invalid_argument("h must be [..., dim]");
        std::vector<py::ssize_t> shape(h.shape(), h.shape() + h.ndim());
        shape.back() = mdl.cfg.vocab;
        const int M = int(h.size() / mdl.cfg.dim);
        py::array_t<int64_t> out(shape);
        {
          py::gil_scoped_release nogil;
          mdl.head_logits(h.data(), M, out.mutable_data());
        }
        return out;
      })
      .def("head_logits32", [](PyModel& pm, carray<double> h) {
        Model& mdl = *pm.model;
        if (h.ndim() < 1 || h.shape(h.ndim() - 1) != mdl.cfg.dim) throw std::invalid_argument("h must be [..., dim]");
        std::vector<py::ssize_t> shape(h.shape(), h.shape() + h.ndim());
        shape.back() = mdl.cfg.vocab;
        const int M = int(h.size() / mdl.cfg.dim);
        py::array_t<int32_t> out(shape);
        bool fits;
        {
          py::gil_scoped_release nogil;
          fits = mdl.head_logits32(h.data(), M, out.mutable_data());
        }
        return fits ? py::object(out) : py::object(py::none());  // None: ask head_logits
      })
      .def("logit_frequencies", [](PyModel& pm, carray<int64_t> z) {
        Model& mdl = *pm.model;
        const int V = mdl.cfg.vocab;
        if (z.ndim() < 1 || z.shape(z.ndim() - 1) != V) throw std::invalid_argument("logits must be [..., vocab]");
        std::vector<py::ssize_t> shape(z.shape(), z.shape() + z.ndim());
        py::array_t<int32_t> out(shape);
        const int64_t M = z.size() / V;
        py::gil_scoped_release nogil;
        for (int64_t r = 0; r < M; ++r)
          logits_to_frequencies(z.data() + r * V, V, mdl.tab.out_exp.data(), int(mdl.tab.out_exp.size()), out.mutable_data() + r * V);
        return out;
      })
      .def("head_frequencies", [](PyModel& pm, carray<double> h) {
        Model& mdl = *pm.model;
        if (h.ndim() < 1 || h.shape(h.ndim() - 1) != mdl.cfg.dim) throw std::invalid_argument("h must be [..., dim]");
        std::vector<py::ssize_t> shape(h.shape(), h.shape() + h.ndim());
        shape.back() = mdl.cfg.vocab;
        const int M = int(h.size() / mdl.cfg.dim);
        py::array_t<int32_t> out(shape);
        {
          py::gil_scoped_release nogil;
          mdl.head_frequencies(h.data(), M, out.mutable_data());
        }
        return out;
      });

  // -- coding -------------------------------------------------------------------------------------
  py::class_<PyEncoder>(m, "TokenEncoder")
      .def(py::init<int, int>(), py::arg("total_bits"), py::arg("top_k"))
      .def("encode_many", [](PyEncoder& e, carray<int64_t> symbols, py::array rows) {
        if (e.finished) throw std::invalid_argument("encoder already finished");
        auto r = rows_int32(rows, e.coder.total_bits, 2);
        const int64_t n = r.shape(0);
        const int V = int(r.shape(1));
        if (symbols.size() != n) throw std::invalid_argument(std::to_string(symbols.size()) + " symbols but " + std::to_string(n) + " frequency rows");
        for (int64_t i = 0; i < n; ++i)
          if (symbols.data()[i] < 0 || symbols.data()[i] >= V) throw std::invalid_argument("symbol out of range 0.." + std::to_string(V - 1));
        py::gil_scoped_release nogil;
        for (int64_t i = 0; i < n; ++i) e.code(r.data() + i * V, V, int32_t(symbols.data()[i]));
      })
      .def("num_words", [](const PyEncoder& e) { return e.enc.num_words(); })
      .def("finish", [](PyEncoder& e) {
        e.finished = true;
        return py::bytes(words_to_bytes(e.enc.finish_words()));
      })
      .def_readonly("num_symbols", &PyEncoder::symbols)
      .def_property_readonly("num_escapes", [](const PyEncoder& e) { return e.coder.escapes; });

  py::class_<PyDecoder>(m, "TokenDecoder")
      .def(py::init([](py::bytes data, int tb, int k) {
        const std::string s = data;
        std::vector<uint32_t> w((s.size() + 3) / 4, 0);
        for (size_t i = 0; i < s.size(); ++i) w[i / 4] |= uint32_t(uint8_t(s[i])) << (24 - 8 * (i % 4));
        return new PyDecoder(std::move(w), tb, k);
      }), py::arg("data"), py::arg("total_bits"), py::arg("top_k"))
      .def("decode", [](PyDecoder& d, py::array row) {
        auto r = rows_int32(row, d.coder.total_bits, 1);
        return d.code(r.data(), int(r.shape(0)));
      }, "The next symbol under row, or -1 when the data is not a valid stream")
      .def("canonical", [](const PyDecoder& d) { return py::bytes(words_to_bytes(d.shadow.finish_words())); })
      .def("overread", [](const PyDecoder& d) { return d.dec.overread(); })
      .def_readonly("num_symbols", &PyDecoder::symbols)
      .def_property_readonly("num_escapes", [](const PyDecoder& d) { return d.coder.escapes; });

  // -- the adaptive predictor ------------------------------------------------------------------------
  py::class_<Predictor>(m, "Predictor")
      .def(py::init(&new_predictor), py::arg("params"), py::arg("exp_table"), py::arg("vocab"), py::arg("classes"))
      .def("predict", &predict_row<int32_t>)  // int32 logits (head_logits32) as they are, else int64
      .def("predict", &predict_row<int64_t>)
      .def("update", [](Predictor& p, int y) {
        if (y < 0 || y >= p.vocab()) throw std::invalid_argument("token out of range");
        py::gil_scoped_release nogil;
        p.update(y);
      })
      .def("last", [](const Predictor& p) { return std::vector<int64_t>(p.last().begin(), p.last().end()); })
      .def("state", [](const Predictor& p) {
        // The whole learned state in the reference's shapes, for its digest.
        py::dict st;
        {
          const std::vector<int64_t> u(p.unigram().begin(), p.unigram().end());
          st["unigram"] = py::array_t<int64_t>(py::ssize_t(u.size()), u.data());
        }
        py::dict bg;
        for (const auto& kv : p.bigram())
        {
          const std::vector<int64_t> keys(kv.second.keys.begin(), kv.second.keys.end());
          bg[py::int_(kv.first)] = py::make_tuple(py::array_t<int64_t>(py::ssize_t(keys.size()), keys.data()),
                                                  py::array_t<int64_t>(py::ssize_t(kv.second.vals.size()), kv.second.vals.data()));
        }
        st["bigram"] = bg;
        st["beta"] = p.beta();
        st["match_ptr"] = p.match_ptr();
        st["match_len"] = p.match_len();
        st["history"] = std::vector<int64_t>(p.history().begin(), p.history().end());
        auto context = [&](int32_t node) {
          std::vector<int64_t> c;
          for (int32_t x = node; x > 0; x = p.nodes()[size_t(x)].parent) c.push_back(p.nodes()[size_t(x)].token);
          return py::tuple(py::cast(c));
        };
        py::list ngrams;
        for (int k = 1; k <= p.params().ngram_order; ++k) ngrams.append(py::dict());
        for (size_t i = 1; i < p.nodes().size(); ++i) {
          const auto& nd = p.nodes()[i];
          if (nd.depth > p.params().ngram_order || nd.next.empty()) continue;
          py::dict counts;
          for (const auto& tc : nd.next) counts[py::int_(tc.first)] = tc.second;
          ngrams[size_t(nd.depth - 1)].cast<py::dict>()[context(int32_t(i))] = counts;
        }
        st["ngrams"] = ngrams;
        py::dict mi;
        p.match_index().for_each([&](uint64_t node, int32_t pos) { mi[context(int32_t(node))] = pos; });
        st["match_index"] = mi;
        for (int second = 0; second < 2; ++second) {
          py::dict w;
          for (auto& kv : p.weight_sets(second)) w[py::int_(kv.first)] = py::array_t<int64_t>(py::ssize_t(kv.second.size()), kv.second.data());
          st[second ? "weights2" : "weights"] = w;
        }
        return st;
      });

  // Fused loops: model logits -> predictor -> coder, one call per run of rows.
  // int64 logits, or int32 from Model.head_logits32 (each overload takes its dtype as it is)
  def_logit_loops<int32_t>(m);
  def_logit_loops<int64_t>(m);

  py::class_<HostPool> host(m, "HostPool");
  host.def(py::init<int>(), py::arg("threads"))
      .def_property_readonly("threads", [](HostPool& hp) { return hp.pool.size(); });
  def_step_loops<int32_t>(host);
  def_step_loops<int64_t>(host);

}
