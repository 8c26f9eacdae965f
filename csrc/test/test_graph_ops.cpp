// C++ tests of the dynst_fast graph ops (induce_subgraph, bipartite, gated_spmm and its
// backward, csr_transpose), called through the dispatcher exactly as
// torch.ops.dynst_fast.* would call them. Run by ctest (see CMakeLists.txt).

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/util/Exception.h>

#include <cstdio>
#include <exception>
#include <string>
#include <tuple>
#include <vector>

namespace {

int g_failures = 0;

#define EXPECT(cond)                                                                    \
  do {                                                                                  \
    if (!(cond)) {                                                                      \
      std::fprintf(stderr, "%s:%d: EXPECT failed: %s\n", __FILE__, __LINE__, #cond);    \
      ++g_failures;                                                                     \
    }                                                                                   \
  } while (0)

// expr must throw a c10::Error whose message contains `needle`.
#define EXPECT_THROWS(expr, needle)                                                     \
  do {                                                                                  \
    bool thrown_ = false;                                                               \
    try {                                                                               \
      (void)(expr);                                                                     \
    } catch (const c10::Error& e_) {                                                    \
      thrown_ = true;                                                                   \
      if (std::string(e_.what()).find(needle) == std::string::npos) {                   \
        std::fprintf(stderr, "%s:%d: %s threw without \"%s\": %s\n", __FILE__, __LINE__, \
                     #expr, needle, e_.what());                                         \
        ++g_failures;                                                                   \
      }                                                                                 \
    }                                                                                   \
    if (!thrown_) {                                                                     \
      std::fprintf(stderr, "%s:%d: %s did not throw\n", __FILE__, __LINE__, #expr);     \
      ++g_failures;                                                                     \
    }                                                                                   \
  } while (0)

using Csr = std::tuple<at::Tensor, at::Tensor, at::Tensor>;

Csr induce(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& weight,
           const at::Tensor& index) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("dynst_fast::induce_subgraph", "")
                       .typed<Csr(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                  const at::Tensor&)>();
  return op.call(rowptr, col, weight, index);
}

Csr bipartite(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& weight,
              const at::Tensor& index, int64_t num_cols) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("dynst_fast::bipartite", "")
                       .typed<Csr(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                  const at::Tensor&, int64_t)>();
  return op.call(rowptr, col, weight, index, num_cols);
}

at::Tensor gated_spmm(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& weight,
                      const at::Tensor& x, const at::Tensor& gate, int64_t num_rows) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("dynst_fast::gated_spmm", "")
                       .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                         const at::Tensor&, const at::Tensor&, int64_t)>();
  return op.call(rowptr, col, weight, x, gate, num_rows);
}

std::tuple<at::Tensor, at::Tensor> gated_spmm_backward(const Csr& t, const at::Tensor& x,
                                                       const at::Tensor& gate,
                                                       const at::Tensor& grad_out,
                                                       bool need_gate_grad) {
  static auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("dynst_fast::gated_spmm_backward", "")
          .typed<std::tuple<at::Tensor, at::Tensor>(
              const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
              const at::Tensor&, const at::Tensor&, bool)>();
  return op.call(std::get<0>(t), std::get<1>(t), std::get<2>(t), x, gate, grad_out,
                 need_gate_grad);
}

Csr csr_transpose(const Csr& g, int64_t num_cols) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("dynst_fast::csr_transpose", "")
                       .typed<Csr(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                  int64_t)>();
  return op.call(std::get<0>(g), std::get<1>(g), std::get<2>(g), num_cols);
}

at::Tensor longs(const std::vector<int64_t>& v) {
  return at::tensor(v, at::TensorOptions().dtype(at::kLong));
}

// Dense -> CSR (row-major order, zeros are no edge).
Csr from_dense(const at::Tensor& a) {
  const at::Tensor nz = a.nonzero();  // [E, 2], row-major order
  const at::Tensor rows = nz.select(1, 0).contiguous();
  const at::Tensor cols = nz.select(1, 1).contiguous();
  const at::Tensor counts = at::bincount(rows, {}, a.size(0));
  at::Tensor rowptr = at::zeros({a.size(0) + 1}, at::kLong);
  rowptr.slice(0, 1).copy_(counts.cumsum(0));
  return {rowptr, cols, a.index({rows, cols}).contiguous()};
}

// CSR -> dense [num_rows, num_cols]; duplicate edges add up.
at::Tensor to_dense(const Csr& g, int64_t num_cols) {
  const auto& [rowptr, col, weight] = g;
  const int64_t num_rows = rowptr.numel() - 1;
  const at::Tensor counts = rowptr.slice(0, 1) - rowptr.slice(0, 0, num_rows);
  const at::Tensor rows = at::repeat_interleave(counts);
  at::Tensor out = at::zeros({num_rows, num_cols}, weight.options());
  return out.index_put_({rows, col}, weight, /*accumulate=*/true);
}

bool valid_csr(const Csr& g, int64_t num_rows, int64_t num_cols) {
  const auto& [rowptr, col, weight] = g;
  if (rowptr.scalar_type() != at::kLong || col.scalar_type() != at::kLong) return false;
  if (rowptr.numel() != num_rows + 1 || rowptr[0].item<int64_t>() != 0) return false;
  if (rowptr[-1].item<int64_t>() != col.numel() || weight.numel() != col.numel()) return false;
  if (num_rows > 0 && (rowptr.slice(0, 1) < rowptr.slice(0, 0, num_rows)).any().item<bool>())
    return false;
  if (col.numel() && (col.min().item<int64_t>() < 0 || col.max().item<int64_t>() >= num_cols))
    return false;
  return true;
}

at::Tensor random_adjacency(int64_t rows, int64_t cols, double density, at::ScalarType dtype) {
  const at::Tensor mask = at::rand({rows, cols}) < density;
  return (at::rand({rows, cols}, at::kDouble) + 0.5).mul(mask).to(dtype);
}

void test_small_graph_stable_order() {
  // 0 <- {2, 0, 3}, 1 <- {}, 2 <- {4, 2, 2 (duplicate)}, 3 <- {1}, 4 <- {0, 4}
  const at::Tensor rowptr = longs({0, 3, 3, 6, 7, 9});
  const at::Tensor col = longs({2, 0, 3, 4, 2, 2, 1, 0, 4});
  const at::Tensor w = at::arange(1, 10, at::kFloat);
  const at::Tensor index = longs({4, 0, 2});  // unsorted: node 4 -> 0, 0 -> 1, 2 -> 2

  const Csr sub = induce(rowptr, col, w, index);
  EXPECT(valid_csr(sub, 3, 3));
  // row 0 = node 4: edges (0 w8, 4 w9) -> cols (1, 0)
  // row 1 = node 0: edges (2 w1, 0 w2, 3 w3) -> cols (2, 1)
  // row 2 = node 2: edges (4 w4, 2 w5, 2 w6) -> cols (0, 2, 2)
  EXPECT(std::get<0>(sub).equal(longs({0, 2, 4, 7})));
  EXPECT(std::get<1>(sub).equal(longs({1, 0, 2, 1, 0, 2, 2})));
  EXPECT(std::get<2>(sub).equal(at::tensor({8.f, 9.f, 1.f, 2.f, 4.f, 5.f, 6.f})));

  const Csr bip = bipartite(rowptr, col, w, index, 5);
  EXPECT(valid_csr(bip, 5, 3));
  EXPECT(std::get<0>(bip).equal(longs({0, 2, 2, 5, 5, 7})));
  EXPECT(std::get<1>(bip).equal(longs({2, 1, 0, 2, 2, 1, 0})));
  EXPECT(std::get<2>(bip).equal(at::tensor({1.f, 2.f, 4.f, 5.f, 6.f, 8.f, 9.f})));
}

void test_against_dense(int64_t n, int64_t k, double density, at::ScalarType dtype) {
  const at::Tensor a = random_adjacency(n, n, density, dtype);
  const Csr g = from_dense(a);
  const at::Tensor index = at::randperm(n, at::kLong).slice(0, 0, k);
  const auto& [rowptr, col, w] = g;

  const Csr sub = induce(rowptr, col, w, index);
  EXPECT(valid_csr(sub, k, k));
  EXPECT(std::get<2>(sub).scalar_type() == dtype);
  EXPECT(to_dense(sub, k).equal(a.index_select(0, index).index_select(1, index)));

  const Csr bip = bipartite(rowptr, col, w, index, n);
  EXPECT(valid_csr(bip, n, k));
  EXPECT(std::get<2>(bip).scalar_type() == dtype);
  EXPECT(to_dense(bip, k).equal(a.index_select(1, index)));
}

void test_rectangular_bipartite() {
  const at::Tensor a = random_adjacency(7, 11, 0.4, at::kFloat);
  const auto [rowptr, col, w] = from_dense(a);
  const at::Tensor index = longs({10, 3, 0, 7});
  const Csr bip = bipartite(rowptr, col, w, index, 11);
  EXPECT(valid_csr(bip, 7, 4));
  EXPECT(to_dense(bip, 4).equal(a.index_select(1, index)));
}

void test_bad_input() {
  const at::Tensor rowptr = longs({0, 1, 3, 3});
  const at::Tensor col = longs({1, 0, 2});
  const at::Tensor w = at::ones({3});
  EXPECT_THROWS(induce(rowptr, col, w, longs({0, 0})), "duplicate");
  EXPECT_THROWS(induce(rowptr, col, w, longs({0, 3})), "out of range");
  EXPECT_THROWS(induce(rowptr, col, w, longs({-1})), "out of range");
  EXPECT_THROWS(bipartite(rowptr, col, w, longs({5}), 3), "out of range");
  EXPECT_THROWS(induce(rowptr, col, w, longs({0}).to(at::kInt)), "int64");
  EXPECT_THROWS(induce(rowptr.to(at::kInt), col, w, longs({0})), "int64");
  EXPECT_THROWS(induce(rowptr, col, at::ones({3}, at::kLong), longs({0})), "floating point");
  EXPECT_THROWS(induce(rowptr, col, at::ones({2}), longs({0})), "weight has 2 entries");
  EXPECT_THROWS(induce(rowptr, col, w, longs({0, 1}).view({1, 2})), "1-D");
  EXPECT_THROWS(induce(longs({}), longs({}), at::ones({0}), longs({0})), "rowptr");
  EXPECT_THROWS(induce(longs({0, 1, 2}), col, w, longs({0})), "rowptr[-1]");
  EXPECT_THROWS(induce(longs({0, 3, 1, 3}), col, w, longs({0, 1})), "non-decreasing");
  EXPECT_THROWS(induce(rowptr, longs({1, 0, 9}), w, longs({1})), "col[2] = 9");
  EXPECT_THROWS(bipartite(rowptr, col, w, longs({0}), -1), "num_cols");
}

// gated_spmm, its backward and csr_transpose against dense float64 computations:
// out = (A * gate) @ x, y = A^T grad_out, grad_x = gate * y, grad_gate = sum_{b,f} x * y.
void check_gated_spmm(const Csr& g, int64_t num_cols, int64_t batch, int64_t features,
                      at::ScalarType dtype) {
  const auto& [rowptr, col, w] = g;
  const int64_t num_rows = rowptr.numel() - 1;
  const at::Tensor a = to_dense(g, num_cols).to(at::kDouble);  // duplicates add up
  const at::Tensor x = at::randn({batch, num_cols, features}, at::kDouble);
  at::Tensor gate = at::randn({num_cols}, at::kDouble);
  gate.slice(0, 0, num_cols, 3).zero_();  // a gate with zeros
  const double tol = dtype == at::kFloat ? 1e-4 : 1e-10;

  const at::Tensor out = gated_spmm(rowptr, col, w, x.to(dtype), gate.to(dtype), num_rows);
  EXPECT(out.scalar_type() == dtype);
  EXPECT(out.sizes().vec() == std::vector<int64_t>({batch, num_rows, features}));
  EXPECT(at::allclose(out.to(at::kDouble), at::matmul(a * gate, x), tol, tol));

  const Csr t = csr_transpose(g, num_cols);
  EXPECT(valid_csr(t, num_cols, num_rows));
  EXPECT(to_dense(t, num_rows).equal(to_dense(g, num_cols).t()));

  const at::Tensor grad_out = at::randn({batch, num_rows, features}, at::kDouble);
  const at::Tensor y = at::matmul(a.t(), grad_out);
  const auto [grad_x, grad_gate] =
      gated_spmm_backward(t, x.to(dtype), gate.to(dtype), grad_out.to(dtype), true);
  EXPECT(grad_x.scalar_type() == dtype && grad_gate.scalar_type() == dtype);
  EXPECT(at::allclose(grad_x.to(at::kDouble), y * gate.view({-1, 1}), tol, tol));
  EXPECT(at::allclose(grad_gate.to(at::kDouble), (x * y).sum({0, 2}), tol, tol * features));
  const auto [grad_x2, no_grad_gate] =
      gated_spmm_backward(t, x.to(dtype), gate.to(dtype), grad_out.to(dtype), false);
  EXPECT(grad_x2.equal(grad_x));
  EXPECT(no_grad_gate.numel() == num_cols);
}

void test_gated_spmm() {
  // 0 <- {2, 0 (self-loop), 3}, 1 <- {} (empty row), 2 <- {4, 2, 2 (duplicate)}, 3 <- {1},
  // 4 <- {0, 4}; node 5 is isolated.
  const Csr small{longs({0, 3, 3, 6, 7, 9, 9}), longs({2, 0, 3, 4, 2, 2, 1, 0, 4}),
                  at::arange(1, 10, at::kFloat) * 0.25};
  // F covers the 8-, 2- and 1-vector tiles and the scalar tail of both dtypes.
  for (const int64_t f : {1, 3, 8, 13, 64, 70}) {
    check_gated_spmm(small, 6, 2, f, at::kFloat);
    check_gated_spmm(small, 6, 2, f, at::kDouble);
  }
  // Hand-computed: gate = 1, x = 1, F = 1: out = row sums of A.
  const auto& [rp, cl, w] = small;
  const at::Tensor ones = gated_spmm(rp, cl, w, at::ones({1, 6, 1}), at::ones({6}), 6);
  EXPECT(at::allclose(ones.flatten(), at::tensor({1.5f, 0.f, 3.75f, 1.75f, 4.25f, 0.f})));
  check_gated_spmm(from_dense(random_adjacency(1, 1, 1.0, at::kFloat)), 1, 3, 5, at::kFloat);
  check_gated_spmm(from_dense(random_adjacency(7, 11, 0.4, at::kFloat)), 11, 3, 9, at::kFloat);
  check_gated_spmm(from_dense(random_adjacency(11, 7, 0.4, at::kDouble)), 7, 1, 20, at::kDouble);
  check_gated_spmm(from_dense(random_adjacency(5, 4, 0.0, at::kFloat)), 4, 2, 3, at::kFloat);
  // Weights of another dtype than x (cast to x's dtype).
  check_gated_spmm(from_dense(random_adjacency(9, 9, 0.5, at::kDouble)), 9, 2, 16, at::kFloat);
  check_gated_spmm(from_dense(random_adjacency(9, 9, 0.5, at::kHalf)), 9, 2, 16, at::kDouble);
  // Several parallel tasks.
  check_gated_spmm(from_dense(random_adjacency(600, 600, 0.02, at::kFloat)), 600, 1, 64,
                   at::kFloat);
  check_gated_spmm(from_dense(random_adjacency(300, 300, 0.03, at::kFloat)), 300, 4, 40,
                   at::kFloat);
}

void test_gated_spmm_bad_input() {
  const at::Tensor rowptr = longs({0, 1, 3, 3});
  const at::Tensor col = longs({1, 0, 2});
  const at::Tensor w = at::ones({3});
  const at::Tensor x = at::randn({2, 3, 4});
  const at::Tensor gate = at::ones({3});
  EXPECT_THROWS(gated_spmm(rowptr, col, w, x[0], gate, 3), "[B, S, F]");
  EXPECT_THROWS(gated_spmm(rowptr, col, w, x.to(at::kHalf), gate.to(at::kHalf), 3),
                "float32 or float64");
  EXPECT_THROWS(gated_spmm(rowptr, col, w, x, gate.to(at::kDouble), 3), "gate must have x's dtype");
  EXPECT_THROWS(gated_spmm(rowptr, col, w, x, at::ones({2}), 3), "gate must have shape [3]");
  EXPECT_THROWS(gated_spmm(rowptr, col, w, x, gate, 2), "rowptr must have 3 entries");
  EXPECT_THROWS(gated_spmm(rowptr.to(at::kInt), col, w, x, gate, 3), "int64");
  EXPECT_THROWS(gated_spmm(rowptr, col, at::ones({3}, at::kLong), x, gate, 3), "floating point");
  EXPECT_THROWS(gated_spmm(rowptr, col, at::ones({2}), x, gate, 3), "weight has 2 entries");
  EXPECT_THROWS(gated_spmm(rowptr, longs({1, 0, 3}), w, x, gate, 3), "col[2] = 3");
  EXPECT_THROWS(gated_spmm(longs({0, 2, 1, 3}), col, w, x, gate, 3), "non-decreasing");
  EXPECT_THROWS(gated_spmm(longs({0, 1, 2, 2}), col, w, x, gate, 3), "rowptr[-1]");
  EXPECT_THROWS(gated_spmm(rowptr, col, w, x, gate, -1), "num_rows");
  const Csr t = csr_transpose({rowptr, col, w}, 3);
  EXPECT_THROWS(gated_spmm_backward(t, x, gate, at::ones({2, 3, 5}), true), "grad_out");
  EXPECT_THROWS(csr_transpose({rowptr, col, w}, 2), "out of range");
}

}  // namespace

int main() {
  at::manual_seed(0);
  try {
    test_small_graph_stable_order();
    test_rectangular_bipartite();
    test_against_dense(1, 1, 1.0, at::kFloat);   // N = 1 with a self-loop
    test_against_dense(6, 6, 0.5, at::kDouble);  // K = N
    test_against_dense(9, 1, 0.5, at::kFloat);   // K = 1
    test_against_dense(20, 7, 0.0, at::kFloat);  // no edges at all
    test_against_dense(40, 17, 0.2, at::kHalf);
    test_against_dense(40, 17, 0.2, at::kBFloat16);
    test_against_dense(3000, 1200, 0.01, at::kFloat);  // several parallel tasks
    test_bad_input();
    test_gated_spmm();
    test_gated_spmm_bad_input();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "test_graph_ops: unexpected exception: %s\n", e.what());
    return 1;
  }
  if (g_failures) {
    std::fprintf(stderr, "test_graph_ops: %d check(s) failed\n", g_failures);
    return 1;
  }
  std::printf("test_graph_ops: all checks passed\n");
  return 0;
}
