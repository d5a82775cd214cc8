/*
 * Unit tests for daemon/core/events: every subscriber gets every event in order, also when memory
 * runs out (an emit allocates nothing; a subscribe that cannot grow the list says -ENOMEM and keeps
 * the subscribers it had), subscribers that unsubscribe or subscribe from their callback, and the
 * run fields of a scenario event.
 */
// WRAP: malloc realloc
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/events.h"
#include "log.h"

void *__real_malloc(size_t n);
void *__wrap_malloc(size_t n);
void *__real_realloc(void *p, size_t n);
void *__wrap_realloc(void *p, size_t n);

static bool fail_alloc; /* when set, malloc and realloc fail */

void *__wrap_malloc(size_t n)
{
    if (fail_alloc)
        return NULL;
    return __real_malloc(n);
}

void *__wrap_realloc(void *p, size_t n)
{
    if (fail_alloc)
        return NULL;
    return __real_realloc(p, n);
}

typedef struct Sink {
    EventBus *bus;
    int id;
    int calls;
    char last[64];
    int unsubscribe; /* id to unsubscribe from the callback, 0: none */
    bool subscribe;  /* subscribe `late` from the callback (once) */
    struct Sink *late;
} Sink;

static int order[16];
static int n_order;

static void on_event(const Event *ev, void *data)
{
    Sink *s = data;
    s->calls++;
    snprintf(s->last, sizeof(s->last), "%s", ev->summary);
    if (n_order < 16)
        order[n_order++] = s->id;
    if (s->unsubscribe) {
        events_unsubscribe(s->bus, s->unsubscribe);
        s->unsubscribe = 0;
    }
    if (s->subscribe) {
        s->subscribe = false;
        s->late->id = events_subscribe(s->bus, on_event, s->late);
    }
}

static void test_every_subscriber_in_order(void **state)
{
    (void)state;
    EventBus *bus = events_new();
    Sink a = {.bus = bus}, b = {.bus = bus}, c = {.bus = bus};
    a.id = events_subscribe(bus, on_event, &a);
    b.id = events_subscribe(bus, on_event, &b);
    c.id = events_subscribe(bus, on_event, &c);
    assert_true(a.id > 0 && b.id > a.id && c.id > b.id);
    n_order = 0;
    events_emit(bus, SEV_INFO, "test.one", NULL, false, NULL, "first %d", 1);
    assert_int_equal(n_order, 3);
    assert_int_equal(order[0], a.id);
    assert_int_equal(order[1], b.id);
    assert_int_equal(order[2], c.id);
    assert_string_equal(c.last, "first 1");
    events_unsubscribe(bus, b.id);
    events_emit(bus, SEV_INFO, "test.two", NULL, false, NULL, "second");
    assert_int_equal(a.calls, 2);
    assert_int_equal(b.calls, 1);
    assert_int_equal(c.calls, 2);
    events_free(bus);
}

static void test_out_of_memory_drops_no_subscriber(void **state)
{
    (void)state;
    EventBus *bus = events_new();
    Sink a = {.bus = bus}, b = {.bus = bus}, extra = {.bus = bus};
    a.id = events_subscribe(bus, on_event, &a);
    b.id = events_subscribe(bus, on_event, &b);

    fail_alloc = true;
    events_emit(bus, SEV_ERROR, "test.oom", NULL, false, NULL, "while memory is short");
    int r = events_subscribe(bus, on_event, &extra);
    events_emit(bus, SEV_ERROR, "test.oom", NULL, false, NULL, "after a failed subscribe");
    fail_alloc = false;

    assert_int_equal(r, -ENOMEM);
    assert_int_equal(a.calls, 2);
    assert_int_equal(b.calls, 2);
    assert_string_equal(b.last, "after a failed subscribe");
    assert_int_equal(extra.calls, 0);
    events_free(bus);
}

static void test_changes_from_inside_a_callback(void **state)
{
    (void)state;
    EventBus *bus = events_new();
    Sink a = {.bus = bus}, b = {.bus = bus}, c = {.bus = bus}, late = {.bus = bus};
    a.id = events_subscribe(bus, on_event, &a);
    b.id = events_subscribe(bus, on_event, &b);
    c.id = events_subscribe(bus, on_event, &c);
    /* b drops itself and c; a adds `late`, which waits for the next event. */
    b.unsubscribe = c.id;
    a.subscribe = true;
    a.late = &late;
    events_emit(bus, SEV_INFO, "test.cb", NULL, false, NULL, "one");
    assert_int_equal(a.calls, 1);
    assert_int_equal(b.calls, 1);
    assert_int_equal(c.calls, 0);
    assert_int_equal(late.calls, 0);
    assert_true(late.id > 0);
    b.unsubscribe = b.id;
    events_emit(bus, SEV_INFO, "test.cb", NULL, false, NULL, "two");
    events_emit(bus, SEV_INFO, "test.cb", NULL, false, NULL, "three");
    assert_int_equal(a.calls, 3);
    assert_int_equal(b.calls, 2);
    assert_int_equal(late.calls, 2);
    events_free(bus);
}

static json_t *seen;

static void on_event_json(const Event *ev, void *data)
{
    (void)data;
    json_decref(seen);
    seen = events_to_json(ev);
}

static void test_run_fields_travel_with_the_event(void **state)
{
    (void)state;
    EventBus *bus = events_new();
    LogFields lf = {"R1", "database_corruption", "halt_trading"};
    assert_true(events_subscribe(bus, on_event_json, NULL) > 0);
    events_emit_run(bus, SEV_INFO, "scenario.transition", NULL, false, NULL, &lf, "run %s: halted", "R1");
    assert_string_equal(json_string_value(json_object_get(seen, "run")), "R1");
    assert_string_equal(json_string_value(json_object_get(seen, "scenario")), "database_corruption");
    assert_string_equal(json_string_value(json_object_get(seen, "step")), "halt_trading");
    events_emit(bus, SEV_INFO, "probe.database", NULL, false, NULL, "no run");
    assert_null(json_object_get(seen, "run"));
    json_decref(seen);
    seen = NULL;
    events_free(bus);
}

int main(void)
{
    log_init(LOG_EMERG, false); /* the events' own log lines are not what is tested here */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_subscriber_in_order),
        cmocka_unit_test(test_out_of_memory_drops_no_subscriber),
        cmocka_unit_test(test_changes_from_inside_a_callback),
        cmocka_unit_test(test_run_fields_travel_with_the_event),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
