// Using omnibal from Node directly: balance a dataset, split a VLM into stages, predict a run.
//   node examples/node_plan.mjs ../shared/data/lengths/ai2d_train_12k.json
import omnibal from '../dist/index.js';

const { readSamples, balanceBatches, batchMetrics, planForRank, vlmStageProblem, partitionStages, exportMegatron, planTraining } = omnibal;

const samples = await readSamples(process.argv.slice(2));
const plan = balanceBatches(samples, { dp: 8, accum: 4, samplesPerPack: 4.5, seed: 1 });
const m = batchMetrics(plan, samples);
console.log(`${plan.steps} steps; vision dist ${m.visionDist.toFixed(5)}, text dist ${m.textDist.toFixed(5)}, pad ${m.padRatio}`);
console.log('rank 3, step 0:', planForRank(plan, 3)[0].map((mb) => Array.from(mb)));

const problem = vlmStageProblem({ model: 'internvl-chat-1.5', gpu: 'A100-80G', pp: 8, dp: 8, microBatches: 32, load: { tiles: 18, tokens: 5000 } });
const stages = partitionStages(problem);
const megatron = exportMegatron(problem, stages); // its flags, or what Megatron-LM cannot express (this split)
console.log('predicted iteration (ms):', stages.objectiveMs.toFixed(0));
console.log(megatron.args.length > 0 ? `Megatron-LM: ${megatron.args.join(' ')}` : `Megatron-LM cannot run it as is: ${megatron.unsupported.join('; ')}`);

const run = planTraining({ samples, simulatedSteps: 4 });
for (const row of run.ablation) console.log(`${row.name}: ${row.speedup.toFixed(2)}x (predicted)`);
