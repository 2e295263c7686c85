// One event loop of the uring backend: a thread, a ring, a listener, the connections it
// accepted (one coroutine each), their deadlines, and its own pool of idle upstream
// connections. Loops share nothing but the configuration generation in force and its balancer.
#pragma once

#include <sys/socket.h>

#include <array>
#include <chrono>
#include <coroutine>
#include <cstddef>
#include <deque>
#include <memory>
#include <vector>

#include "backends/common/generation.hpp"
#include "backends/common/upstream_pool.hpp"
#include "backends/uring/deadline_heap.hpp"
#include "backends/uring/ring.hpp"
#include "backends/uring/task.hpp"
#include "backends/uring/upstream_watch.hpp"
#include "server/buffer_pool.hpp"
#include "server/config.hpp"
#include "server/connection.hpp"

namespace gearbox::backends::uring {

struct LoopStats;  // uring_backend.hpp

class RingPump;

// The context of the connections a loop accepted under one configuration generation; each
// connection holds it until it ends.
struct LoopContext {
  std::shared_ptr<Generation> gen;
  core::Context ctx;
};

class Loop {
 public:
  // `listen_fd` is owned by the loop from run() on (closed when it stops accepting).
  // `gens` holds the configuration in force (published before run()); `config` is the start-up
  // one, for what a reload cannot change. `max_connections`: this loop's share of the cap.
  Loop(const core::Config& config, Generations& gens, int listen_fd, int drain_fd,
       int max_connections);
  ~Loop();
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;

  // Sets up the ring (on the calling thread: the ring is single-issuer), serves until drained,
  // returns the exit status. `log_loops` > 0: write the start-up line naming the ring features
  // in use and that many loops.
  int run(int log_loops);
  // Where this loop publishes its turns, operations in flight and connections after every turn
  // (the admin /status page); null = nowhere. Set before run().
  void publish_to(LoopStats* stats) { stats_ = stats; }
  // Before run(): use none of the optional ring features (tests of the fallback paths).
  void use_basic_ring() { basic_ring_ = true; }
  // Before run(): a provided-buffer ring of at most `n` buffers (tests that find it empty).
  void use_buffers(unsigned n) { ring_buffers_ = n; }

  // --- For the connections' pumps -------------------------------------------------------------
  Ring& ring() { return ring_; }
  // For a connection accepted now: the context of the generation in force (made once per
  // generation and loop).
  std::shared_ptr<LoopContext> context();
  UpstreamPool* pool() { return pool_.get(); }
  UpstreamWatch& upstream_watch() { return watch_; }  // the pool's idle connections
  DeadlineHeap& deadlines() { return deadlines_; }
  // The time this turn's completions were reaped at, read once per turn (as nginx caches its
  // time per event-loop iteration): what the connections' cores take as `now`. Deadlines come
  // due against the same reading, so a connection woken by one sees it passed.
  core::TimePoint now() const { return now_; }
  bool draining() const { return draining_; }
  void attach(RingPump* p);
  void detach(RingPump* p);  // the connection is gone (every CQE reaped): a slot is free

  // The size of the connections' input buffers (and the proxy's upstream ones), held only
  // while they hold bytes. Larger than the blocking backends' (whose connections hold theirs
  // from birth to death): a connection here holds none while idle, and a large body moves
  // 64 KiB per receive and send (profiled at echo-256k: 16 KiB pieces cost the server about
  // 1.6 times the CPU per request).
  static constexpr std::size_t kInputBufferSize = 64 * 1024;

  // Receive buffers for when the provided-buffer ring is missing or empty (ENOBUFS).
  static constexpr std::size_t kSpareBufferSize = 16 * 1024;
  char* take_spare_buffer();
  void give_spare_buffer(char* b);

  // A receive's spare buffer (Loop::kSpareBufferSize), for when there is no provided-buffer
  // ring (each receive has one) or the ring was found empty (ENOBUFS). Those of the second kind
  // are at most kStarvedReceives at once. A connection storm empties the ring at once (thousands
  // of connections accepted in one turn, each with its request already there): a spare buffer
  // each put 9,000 of them in the heap at once, whose pages the heap kept (3.6 KiB per idle
  // connection held afterwards; nginx 0.5). Past the bound the pump waits in turn (null is
  // returned, `p` queued) and is woken (RingPump::buffers_freed) to try the ring again as a
  // spare receive ends or the ring is refilled. When none got its turn for kStarvedPatience
  // and two whole turns, all that wait take spares past the bound (`overdraw`): the spares
  // are then held by connections that read no more (proxied requests awaiting a silent
  // upstream, with more pipelined behind them than the core reads ahead), and the others must
  // not stall behind them.
  static constexpr std::size_t kStarvedReceives = 64;
  static constexpr core::Duration kStarvedPatience{20};
  char* take_receive_spare(RingPump* p, bool overdraw);
  void give_receive_spare(char* b);
  void forget_starved(RingPump* p);  // p is gone while waiting

  std::size_t live() const { return live_; }
  // Connections asleep (core::Connection::sleep): counted for the admin /status page, and for
  // the memory given back once many went to sleep (release_memory()).
  void count_asleep(int delta) {
    asleep_ += delta;
    if (delta > 0) {
      ++slept_since_release_;
      last_sleep_ = now_;
    }
  }

  // Closes a connection's socket on the ring (with the next submit); nobody waits for it, and
  // the loop does not stop before it completed.
  void close_socket(int fd);

  // The doze set (RingPump::doze): the last kDozeSlots connections that went idle, their cores
  // awake. A connection joining it puts the one that joined kDozeSlots dozes ago to sleep (if
  // it is still there); a turn that finds nobody dozed for kDozeQuiet puts them all to sleep.
  static constexpr std::size_t kDozeSlots = 128;
  static_assert(kDozeSlots <= 256);  // a pump keeps its slot number in 8 bits
  static constexpr core::Duration kDozeQuiet{50};
  void doze(RingPump* p);
  void leave_doze(RingPump* p);

 private:
  struct CapacityAwait;
  // Multishot accept: one SQE yields a CQE per accepted connection until cancelled or failed.
  class MultishotAcceptor final : public Resolver {
   public:
    explicit MultishotAcceptor(Loop& loop) : loop_(loop) {}
    void resolve(int res, unsigned flags) override;
    Loop& loop_;
    bool armed = false;
    bool cancelled = false;
  };
  struct Closer final : Resolver {
    void resolve(int, unsigned) override {}
  };
  Detached accept_loop();
  void tend_multishot(core::TimePoint now);
  void serve(int fd, const sockaddr_storage* peer);
  Detached watch_drain();
  void begin_drain(core::TimePoint now);
  bool finished() const;

  const core::Config& config_;
  int listen_fd_;
  int drain_fd_;
  std::size_t cap_;
  Ring ring_;
  core::BufferPool buffers_{256, kInputBufferSize};
  Generations& gens_;
  std::shared_ptr<LoopContext> ctx_;  // of the newest generation this loop accepted under
  UpstreamWatch watch_{ring_};        // before pool_: outlives its idle set
  std::unique_ptr<UpstreamPool> pool_;
  DeadlineHeap deadlines_;

  RingPump* conns_ = nullptr;  // intrusive list of live connections (for drain)
  std::size_t live_ = 0;
  std::int64_t asleep_ = 0;
  LoopStats* stats_ = nullptr;
  std::coroutine_handle<> capacity_waiter_;
  Resolver* accept_op_ = nullptr;  // the accept (or accept back-off) in flight

  bool basic_ring_ = false;
  unsigned ring_buffers_ = Ring::kBufferCount;
  bool draining_ = false;
  bool killed_ = false;
  bool acceptor_done_ = false;
  bool drain_watch_done_ = false;
  core::TimePoint drain_deadline_ = core::kNever;
  core::TimePoint next_sweep_ = core::kNever;
  core::TimePoint now_ = core::Clock::now();
  std::vector<char*> spare_buffers_;
  std::size_t starved_receives_ = 0;  // spare buffers lent to receives that found the ring empty
  struct Stamp {
    core::TimePoint time;
    std::uint64_t turn;
  };
  struct Starved {
    RingPump* pump;
    Stamp since;
  };
  std::deque<Starved> starved_;  // receives waiting for a buffer, first come first served
  Stamp starved_moved_{};        // when one of them last got its turn
  std::uint64_t turn_ = 0;       // the loop's turns so far
  // Since when none of the waiting receives got its turn (the later of the first one's wait
  // and the last turn given).
  const Stamp& starved_since() const {
    return starved_.front().since.turn > starved_moved_.turn ? starved_.front().since
                                                             : starved_moved_;
  }
  void wake_starved(std::size_t n);
  std::array<RingPump*, kDozeSlots> dozers_{};  // null: a free slot
  std::size_t dozing_ = 0;
  std::uint8_t doze_next_ = 0;  // the slot the next dozer takes (the longest dozing one's)
  core::TimePoint last_doze_{};
  void evict_dozer(RingPump*& slot);  // empties the slot; its dozer (if any) is put to sleep
  void sleep_dozers();

  // Once kReleaseAfter connections went to sleep and then none for kDozeQuiet (a storm of
  // connections that now idle), the loop gives the memory they left behind back to the system:
  // the free pages inside the heap (malloc_trim: the states they woke with were freed between
  // the frames that stay) and the pages of the receive buffers that no receive holds. Without
  // it a storm of 10,000 connections, each sending one request and then idling, left 1.2 KiB
  // per connection held.
  static constexpr std::size_t kReleaseAfter = 512;
  std::size_t slept_since_release_ = 0;
  std::uint64_t releases_ = 0;  // for /status: memory_releases
  core::TimePoint last_sleep_{};
  void release_memory();

  MultishotAcceptor multishot_{*this};
  Closer closer_;
  std::deque<int> accepted_;  // accepted by the multishot while at the cap: served in turn
  bool accept_warned_ = false;
  core::TimePoint accept_paused_until_{};
};

}  // namespace gearbox::backends::uring
