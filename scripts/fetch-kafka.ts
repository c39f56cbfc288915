/** Puts the pinned Apache Kafka broker's jars into the cache (npm run kafka:fetch). */
import { cacheDir, ensureKafkaJars, kafkaVersion } from '../src/cli/local/kafka.js';

const t0 = Date.now();
const libs = await ensureKafkaJars((m) => console.log(m));
console.log(`Kafka ${kafkaVersion()} jars in ${libs} (${Date.now() - t0} ms; cache ${cacheDir()})`);
