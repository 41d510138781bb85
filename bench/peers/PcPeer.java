// One peer of `sluice bench peers`: Confluent Parallel Consumer (KEY ordering) calling an
// OpenAI-compatible endpoint for every record of the source topic and producing each
// answered record to the output topic (its value: the source value, unchanged). Run as a
// single source file:  java -cp <jars> PcPeer.java BOOTSTRAP SOURCE OUTPUT GROUP URL MODEL CONCURRENCY
// CONCURRENCY "default" keeps Parallel Consumer's own maxConcurrency.
//
// A call that fails (HTTP 429 or 5xx, a timeout) throws PCRetriableException: Parallel
// Consumer retries the record after its default retry delay (1 s), as its documentation
// describes; it has no retry limit of its own, so a record that always fails holds its key.
// Runs until SIGTERM, then closes Parallel Consumer (commits what completed).

import io.confluent.parallelconsumer.PCRetriableException;
import io.confluent.parallelconsumer.ParallelConsumerOptions;
import io.confluent.parallelconsumer.ParallelStreamProcessor;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public class PcPeer {
    public static void main(String[] args) throws Exception {
        if (args.length != 7) {
            System.err.println("usage: PcPeer BOOTSTRAP SOURCE OUTPUT GROUP URL MODEL CONCURRENCY|default");
            System.exit(2);
        }
        String bootstrap = args[0], source = args[1], output = args[2], group = args[3];
        String url = args[4], model = args[5], concurrency = args[6];

        Properties c = new Properties();
        c.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        c.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        c.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false"); // Parallel Consumer commits
        c.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        KafkaConsumer<String, String> consumer =
                new KafkaConsumer<>(c, new StringDeserializer(), new StringDeserializer());
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        KafkaProducer<String, String> producer =
                new KafkaProducer<>(p, new StringSerializer(), new StringSerializer());

        var builder = ParallelConsumerOptions.<String, String>builder()
                .ordering(ParallelConsumerOptions.ProcessingOrder.KEY)
                .consumer(consumer)
                .producer(producer);
        if (!concurrency.equals("default")) {
            builder = builder.maxConcurrency(Integer.parseInt(concurrency));
        }
        ParallelStreamProcessor<String, String> pc =
                ParallelStreamProcessor.createEosStreamProcessor(builder.build());

        HttpClient http = HttpClient.newBuilder()
                .version(HttpClient.Version.HTTP_1_1)
                .connectTimeout(Duration.ofSeconds(10))
                .build();
        pc.subscribe(List.of(source));
        pc.pollAndProduce(context -> {
            ConsumerRecord<String, String> record = context.getSingleConsumerRecord();
            String body = "{\"model\":" + quote(model) + ",\"max_tokens\":16,"
                    + "\"messages\":[{\"role\":\"user\",\"content\":" + quote(record.value()) + "}]}";
            HttpRequest request = HttpRequest.newBuilder(URI.create(url))
                    .timeout(Duration.ofSeconds(30))
                    .header("Content-Type", "application/json")
                    .header("Authorization", "Bearer bench")
                    .POST(HttpRequest.BodyPublishers.ofString(body))
                    .build();
            HttpResponse<String> response;
            try {
                response = http.send(request, HttpResponse.BodyHandlers.ofString());
            } catch (Exception e) {
                throw new PCRetriableException("call failed: " + e);
            }
            if (response.statusCode() != 200) {
                throw new PCRetriableException("HTTP " + response.statusCode());
            }
            return new ProducerRecord<>(output, record.key(), record.value());
        });

        CountDownLatch closed = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            pc.close();
            closed.countDown();
        }));
        System.out.println("pc-peer: running, maxConcurrency " + concurrency);
        closed.await();
    }

    /** A JSON string literal. */
    static String quote(String s) {
        StringBuilder b = new StringBuilder("\"");
        for (char ch : (s == null ? "" : s).toCharArray()) {
            switch (ch) {
                case '"' -> b.append("\\\"");
                case '\\' -> b.append("\\\\");
                case '\n' -> b.append("\\n");
                case '\r' -> b.append("\\r");
                case '\t' -> b.append("\\t");
                default -> {
                    if (ch < 0x20) b.append(String.format("\\u%04x", (int) ch));
                    else b.append(ch);
                }
            }
        }
        return b.append('"').toString();
    }
}
