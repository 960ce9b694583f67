/* tests/json_file.h: the JSON files of the test data, read and parsed, and the conversations of their golden
 * cases, for the test programs that compare against goldens (test_jinja, test_template). */
#ifndef LMTERM_TESTS_JSON_FILE_H
#define LMTERM_TESTS_JSON_FILE_H

#include "common.h"
#include "template.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>

/* the JSON file DIR/NAME, parsed; NULL if it cannot be read or parsed, said in a FAIL line and counted in *fails */
static cJSON *load_json(const char *dir, const char *name, int *fails)
{
	char path[4200], *buf;
	size_t len;
	snprintf(path, sizeof path, "%s/%s", dir, name);
	if (read_file(path, &buf, &len) != LM_OK) {
		printf("FAIL: %s\n", lm_errmsg());
		(*fails)++;
		return NULL;
	}
	cJSON *j = cJSON_Parse(buf);
	free(buf);
	if (!j) {
		printf("FAIL: %s: not valid JSON\n", path);
		(*fails)++;
	}
	return j;
}

/* the "messages" of golden case C as at most CAP chat messages (the strings stay in C); a case with more
 * is said in a FAIL line and counted in *fails, and its first CAP are returned */
static int golden_msgs(const cJSON *c, struct chat_msg *m, int cap, int *fails)
{
	int nm = 0;
	const cJSON *e;
	cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(c, "messages")) {
		if (nm == cap) {
			printf("FAIL: a golden case has more than %d messages\n", cap);
			(*fails)++;
			break;
		}
		m[nm].role = cJSON_GetObjectItemCaseSensitive(e, "role")->valuestring;
		m[nm].content = cJSON_GetObjectItemCaseSensitive(e, "content")->valuestring;
		nm++;
	}
	return nm;
}

#endif
