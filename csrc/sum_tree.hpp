// Sum-tree over non-negative priorities, for prioritized replay.
//
// An 8-ary tree stored level by level: level 0 holds the leaves (one per slot,
// padded to a multiple of 8), and entry j of level l+1 is the sum of entries
// [8j, 8j+8) of level l.  The top level has 8 entries and total() is their sum.
// A leaf never set holds -0.0 (it adds as 0); a leaf set to 0 holds +0.0.  A
// second tree of the same shape above the leaves holds minima, counting -0.0
// leaves as +inf, so min() covers the leaves ever set.  The min-tree is
// maintained lazily: update() only notes the leaf blocks it touched, and the
// next min() recomputes their paths (each block once, however many updates
// touched it in between).  A learner needs the minimum once per batch sampled,
// not once per priority update, so the update path does half the work.
//
// Descent picks the first child whose running sum exceeds u, so a child whose
// sum is 0 is never chosen; when rounding leaves u at or past the last running
// sum (stored parents are summed pairwise, which can differ from the running
// sum in the last bit), the last non-zero child is taken.  Hence a leaf that
// was never set (priority 0) is never sampled.
//
// Batched calls walk all queries one level at a time: the loads of different
// queries are independent, so the CPU overlaps their cache misses.  No RNG lives
// here: callers pass uniforms.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

namespace drlmpi {

// Allocator giving 64-byte alignment, so each block of K doubles is one cache line.
template <typename T>
struct CacheAligned {
  using value_type = T;
  CacheAligned() = default;
  template <typename U>
  CacheAligned(const CacheAligned<U>&) {}
  T* allocate(std::size_t n) {
    void* p = ::operator new(n * sizeof(T), std::align_val_t(64));
    return static_cast<T*>(p);
  }
  void deallocate(T* p, std::size_t) { ::operator delete(p, std::align_val_t(64)); }
  template <typename U>
  bool operator==(const CacheAligned<U>&) const { return true; }
  template <typename U>
  bool operator!=(const CacheAligned<U>&) const { return false; }
};
using Level = std::vector<double, CacheAligned<double>>;

class SumTree {
 public:
  static constexpr int64_t K = 8;  // fan-out: one 64-byte cache line of doubles

  explicit SumTree(int64_t capacity) : capacity_(capacity) {
    if (capacity < 1) throw std::invalid_argument("SumTree capacity must be >= 1, got " + std::to_string(capacity));
    int64_t n = round_up(capacity);
    while (true) {
      sums_.emplace_back(n, sums_.empty() ? -0.0 : 0.0);
      mins_.emplace_back(sums_.size() == 1 ? 0 : n, kInf);  // no separate min leaves
      stamps_.emplace_back(sums_.size() == 1 ? 0 : n, 0);  // leaves are never stamped (levels >= 1 are)
      if (n == K) break;
      n = round_up(n / K);
    }
    if (sums_.size() > 1) dirty_flag_.assign(sums_[1].size(), 0);
  }

  int64_t capacity() const { return capacity_; }
  double total() const { return total_; }
  double min() {
    if (sums_.size() == 1) return min_of_leaves(sums_[0].data());
    refresh_mins();
    return min_of(mins_.back().data());
  }

  // Checks without side effects; throw before anything is written.
  void check_indices(const int64_t* idx, int64_t n) const {
    for (int64_t i = 0; i < n; ++i)
      if (idx[i] < 0 || idx[i] >= capacity_)
        throw std::out_of_range("index " + std::to_string(idx[i]) + " outside [0, " + std::to_string(capacity_) + ")");
  }
  static void check_priorities(const double* p, int64_t n) {
    for (int64_t i = 0; i < n; ++i)
      if (!(p[i] >= 0.0) || std::isinf(p[i]))
        throw std::invalid_argument("priority must be finite and >= 0, got " + std::to_string(p[i]));
  }
  void check_uniforms(const double* u, int64_t n) const {
    if (n > 0 && !(total_ > 0.0)) throw std::invalid_argument("cannot sample: total priority is 0");
    for (int64_t i = 0; i < n; ++i)
      if (!(u[i] >= 0.0 && u[i] < total_))
        throw std::invalid_argument("u=" + std::to_string(u[i]) + " outside [0, total()=" + std::to_string(total_) + ")");
  }

  // Sets leaves (the last of duplicate indices wins), then recomputes every
  // touched ancestor from its children, one level at a time.  The children of
  // a parent were touched one level earlier, so only parents miss the cache:
  // they are prefetched kAhead queries ahead.
  // With p null, the leaves are cleared instead: back to never set (-0.0), out of min() and never sampled.
  void update(const int64_t* idx, const double* p, int64_t n) {
    if (n == 0) return;
    double* leaf = sums_[0].data();
    for (int64_t i = 0; i < n; ++i) {
      if (i + kAhead < n) __builtin_prefetch(leaf + idx[i + kAhead], 1);
      leaf[idx[i]] = p ? p[i] + 0.0 : -0.0;  // +0.0 marks a leaf set to 0 as set
    }
    scratch_.resize(n);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t j = idx[i] / K;
      scratch_[i] = j;
      if (sums_.size() > 1 && !dirty_flag_[j]) {  // this leaf block's min path is recomputed by the next min()
        dirty_flag_[j] = 1;
        dirty_.push_back(j);
      }
    }
    ++epoch_;
    for (size_t l = 1; l < sums_.size(); ++l) {
      const double* child = sums_[l - 1].data();
      double* parent = sums_[l].data();
      const bool more = l + 1 < sums_.size();
      // On levels with fewer parents than queries, most parents repeat: skip those already done.
      uint64_t* stamp = static_cast<int64_t>(sums_[l].size()) < n ? stamps_[l].data() : nullptr;
      for (int64_t i = 0; i < n; ++i) {
        if (stamp) {
          const int64_t j = scratch_[i];
          if (more) scratch_[i] = j / K;
          if (stamp[j] == epoch_) continue;
          stamp[j] = epoch_;
          parent[j] = sum_of(child + j * K);
          continue;
        }
        if (i + kAhead < n) __builtin_prefetch(parent + scratch_[i + kAhead], 1);
        const int64_t j = scratch_[i];
        parent[j] = sum_of(child + j * K);
        if (more) scratch_[i] = j / K;
      }
    }
    total_ = sum_of(sums_.back().data());
  }

  void get(const int64_t* idx, double* out, int64_t n) const {
    const double* leaf = sums_[0].data();
    for (int64_t i = 0; i < n; ++i) out[i] = leaf[idx[i]] + 0.0;  // -0.0 (never set) reads as 0
  }

  // For each u in [0, total()), the leaf whose prefix-sum interval holds u.
  // Queries go in groups of G that descend one level together; each query
  // prefetches the block it will read on the next level, while the others of
  // its group are being served.  Child choice is branchless: the number of
  // running sums <= u.
  void sample(const double* u, int64_t* out, int64_t n) const {
    constexpr int64_t G = 32;
    double rest[G];
    int64_t node[G];
    const int64_t top = static_cast<int64_t>(sums_.size()) - 1;
    for (int64_t start = 0; start < n; start += G) {
      const int64_t g = std::min(G, n - start);
      for (int64_t q = 0; q < g; ++q) {
        rest[q] = u[start + q];
        node[q] = 0;
      }
      for (int64_t l = top; l >= 0; --l) {
        const double* level = sums_[l].data();
        const double* below = l > 0 ? sums_[l - 1].data() : nullptr;
        for (int64_t q = 0; q < g; ++q) {
          const double* c = level + node[q] * K;
          double before[K + 1];  // before[k]: running sum of children [0, k)
          before[0] = 0.0;
          int64_t pick = 0;
          for (int64_t k = 0; k < K; ++k) {
            before[k + 1] = before[k] + c[k];
            pick += rest[q] >= before[k + 1];
          }
          if (pick == K || c[pick] <= 0.0) pick = last_nonzero(c);  // rounding pushed u past the end
          rest[q] = std::max(0.0, rest[q] - before[pick]);
          node[q] = node[q] * K + pick;
          if (below) __builtin_prefetch(below + node[q] * K);
        }
      }
      for (int64_t q = 0; q < g; ++q) out[start + q] = node[q];
    }
  }

 private:
  // Recompute the minima above every leaf block touched since the last call, one level at a time.
  void refresh_mins() {
    if (dirty_.empty()) return;
    ++epoch_;
    const int64_t n = static_cast<int64_t>(dirty_.size());
    for (size_t l = 1; l < sums_.size(); ++l) {
      const double* child = l == 1 ? sums_[0].data() : mins_[l - 1].data();
      double* parent_min = mins_[l].data();
      uint64_t* stamp = stamps_[l].data();
      for (int64_t i = 0; i < n; ++i) {
        const int64_t j = dirty_[i];
        dirty_[i] = j / K;
        if (l > 1 && stamp[j] == epoch_) continue;  // level-1 blocks are distinct already
        stamp[j] = epoch_;
        parent_min[j] = l == 1 ? min_of_leaves(child + j * K) : min_of(child + j * K);
        if (l == 1) dirty_flag_[j] = 0;
      }
    }
    dirty_.clear();
  }

  static constexpr double kInf = std::numeric_limits<double>::infinity();
  static int64_t round_up(int64_t n) { return (n + K - 1) / K * K; }
  static constexpr int64_t kAhead = 8;  // prefetch distance, in queries
  // Pairwise in the order of 2-wide SIMD lanes, so the adds do not form one long chain.
  static double sum_of(const double* c) { return ((c[0] + c[2]) + (c[4] + c[6])) + ((c[1] + c[3]) + (c[5] + c[7])); }
  static double min_of(const double* c) {
    return std::min(std::min(std::min(c[0], c[2]), std::min(c[4], c[6])),
                    std::min(std::min(c[1], c[3]), std::min(c[5], c[7])));
  }
  static double leaf_min(double v) { return std::signbit(v) ? kInf : v; }
  static double min_of_leaves(const double* c) {
    return std::min(std::min(std::min(leaf_min(c[0]), leaf_min(c[2])), std::min(leaf_min(c[4]), leaf_min(c[6]))),
                    std::min(std::min(leaf_min(c[1]), leaf_min(c[3])), std::min(leaf_min(c[5]), leaf_min(c[7]))));
  }
  static int64_t last_nonzero(const double* c) {
    int64_t last = 0;
    for (int64_t k = 0; k < K; ++k)
      if (c[k] > 0.0) last = k;
    return last;
  }

  int64_t capacity_;
  double total_ = 0.0;
  std::vector<Level> sums_;  // sums_[0]: leaves; sums_.back(): the K top entries
  std::vector<Level> mins_;  // mins_[0] is empty: leaf minima are read from sums_[0]
  std::vector<std::vector<uint64_t>> stamps_;  // stamps_[l][j] == epoch_: parent j of level l >= 1 done; [0] empty
  uint64_t epoch_ = 0;
  std::vector<int64_t> dirty_;  // level-1 blocks whose minima are stale (each once)
  std::vector<uint8_t> dirty_flag_;  // dirty_flag_[j]: block j is in dirty_
  std::vector<int64_t> scratch_;
};

}  // namespace drlmpi
