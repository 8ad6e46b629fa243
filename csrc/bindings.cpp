// Python bindings of drlmpi::SumTree (module drlmpi._core).  Batched calls take
// 1-D numpy arrays, validate everything before writing, and release the GIL.
#include <atomic>

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "sum_tree.hpp"

namespace py = pybind11;
using drlmpi::SumTree;

namespace {

template <typename T>
py::array_t<T, py::array::c_style> as_1d(const py::handle& obj, const char* name, bool integral) {
  if (integral && py::isinstance<py::array>(obj)) {
    const char kind = py::reinterpret_borrow<py::array>(obj).dtype().kind();
    if (kind != 'i' && kind != 'u') throw py::type_error(std::string(name) + " must be an integer array");
  }
  auto arr = py::array_t<T, py::array::c_style | py::array::forcecast>::ensure(obj);
  if (!arr) throw py::type_error(std::string(name) + " must be array-like of numbers");
  if (arr.ndim() != 1) throw py::value_error(std::string(name) + " must be 1-D, got ndim=" + std::to_string(arr.ndim()));
  return arr;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "drlmpi C++ core: the prioritized-replay sum-tree, and a memory fence for shared-memory protocols.";
  m.def(
      "fence", [] { std::atomic_thread_fence(std::memory_order_seq_cst); },
      "Full memory fence (C++ seq_cst): no load or store moves across it, on any CPU architecture.");
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const std::out_of_range& e) {
      PyErr_SetString(PyExc_IndexError, e.what());
    } catch (const std::invalid_argument& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    }
  });

  py::class_<SumTree>(m, "SumTree", "Sum-tree with min over non-negative leaf priorities.")
      .def(py::init<int64_t>(), py::arg("capacity"))
      .def_property_readonly("capacity", &SumTree::capacity)
      .def("total", &SumTree::total, "Sum of all priorities.")
      .def("min", &SumTree::min, "Smallest priority among leaves ever set; inf when none.")
      .def(
          "update",
          [](SumTree& t, const py::handle& idx_obj, const py::handle& p_obj) {
            auto idx = as_1d<int64_t>(idx_obj, "idx", true);
            auto p = as_1d<double>(p_obj, "priority", false);
            if (idx.shape(0) != p.shape(0))
              throw py::value_error("idx and priority lengths differ: " + std::to_string(idx.shape(0)) + " vs " +
                                    std::to_string(p.shape(0)));
            const int64_t n = idx.shape(0);
            t.check_indices(idx.data(), n);
            SumTree::check_priorities(p.data(), n);
            py::gil_scoped_release release;
            t.update(idx.data(), p.data(), n);
          },
          py::arg("idx"), py::arg("priority"), "Set leaves idx[i] to priority[i]; duplicates: the last wins.")
      .def(
          "clear",
          [](SumTree& t, const py::handle& idx_obj) {
            auto idx = as_1d<int64_t>(idx_obj, "idx", true);
            const int64_t n = idx.shape(0);
            t.check_indices(idx.data(), n);
            py::gil_scoped_release release;
            t.update(idx.data(), nullptr, n);
          },
          py::arg("idx"), "Clear leaves idx: as if never set (priority 0, not counted by min()).")
      .def(
          "get",
          [](const SumTree& t, const py::handle& idx_obj) {
            auto idx = as_1d<int64_t>(idx_obj, "idx", true);
            const int64_t n = idx.shape(0);
            t.check_indices(idx.data(), n);
            py::array_t<double> out(n);
            double* o = out.mutable_data();
            {
              py::gil_scoped_release release;
              t.get(idx.data(), o, n);
            }
            return out;
          },
          py::arg("idx"), "Priorities of leaves idx, float64[n].")
      .def(
          "sample",
          [](const SumTree& t, const py::handle& u_obj) {
            auto u = as_1d<double>(u_obj, "u", false);
            const int64_t n = u.shape(0);
            t.check_uniforms(u.data(), n);
            py::array_t<int64_t> out(n);
            int64_t* o = out.mutable_data();
            {
              py::gil_scoped_release release;
              t.sample(u.data(), o, n);
            }
            return out;
          },
          py::arg("u"), "For each u in [0, total()), the leaf whose prefix-sum interval holds it, int64[n].");
}
